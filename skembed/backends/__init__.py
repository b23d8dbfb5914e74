"""Embedding backends: the plumbing that turns unique, validated texts into vectors.

Nothing in this package imports scikit-learn or an estimator module; estimators call
into it, never the other way round.
"""

from ._base import (
    EmbeddingAPIError,
    EmbeddingBackend,
    EmbeddingError,
    InputTooLongError,
)

__all__ = ["EmbeddingAPIError", "EmbeddingBackend", "EmbeddingError", "InputTooLongError"]
