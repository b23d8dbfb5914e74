"""The scikit-learn common checks that apply to estimators taking raw texts.

With ``input_tags.two_d_array=False``, ``check_estimator`` runs one check and silently
skips the rest (they all feed numeric arrays), so the text estimators name the
data-free checks explicitly.
"""

from sklearn.utils import estimator_checks

TEXT_ESTIMATOR_CHECKS = [
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_tags_renamed,
    estimator_checks.check_valid_tag_types,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_mixin_order,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
]
