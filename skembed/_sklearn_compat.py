"""The one module that imports private scikit-learn names.

scikit-learn's developer guide recommends ``_fit_context`` and the ``_param_validation``
constraint classes to third-party estimators, but they live in private modules that may
move between releases. Importing them here, once, means a move breaks one line.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions

__all__ = ["HasMethods", "Interval", "Options", "StrOptions", "_fit_context"]
