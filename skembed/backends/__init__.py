"""Embedding backends: the plumbing that turns unique, validated texts into vectors.

Nothing in this package imports scikit-learn or an estimator module; estimators call
into it, never the other way round.
"""

from ._base import (
    BudgetExceededError,
    EmbeddingAPIError,
    EmbeddingBackend,
    EmbeddingError,
    InputTooLongError,
)

__all__ = [
    "BudgetExceededError",
    "EmbeddingAPIError",
    "EmbeddingBackend",
    "EmbeddingError",
    "InputTooLongError",
]
