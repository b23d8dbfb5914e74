"""Backends built directly by tests, starting from their estimator's defaults.

A backend has no defaults of its own (its estimator passes every parameter), so a test
that builds one takes the estimator's and overrides what it is about, under the
backend's names (``progress``, ``poll_interval``).
"""

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer
from skembed.backends._local import LocalBackend
from skembed.backends._openai import OpenAIBackend
from skembed.backends._openai_batch import OpenAIBatchBackend


def local_backend(**params):
    """A :class:`LocalBackend` as ``LocalEmbeddingTransformer()`` builds it, with ``params``."""
    return LocalBackend(**{**LocalEmbeddingTransformer()._backend_kwargs(), **params})


def openai_backend(**params):
    """An :class:`OpenAIBackend` as ``OpenAIEmbeddingTransformer()`` builds it, with ``params``."""
    return OpenAIBackend(**{**OpenAIEmbeddingTransformer()._backend_kwargs(), **params})


def openai_batch_backend(**params):
    """An :class:`OpenAIBatchBackend` as ``OpenAIEmbeddingTransformer(batch_api=True)``
    builds it, with ``params``."""
    estimator = OpenAIEmbeddingTransformer(batch_api=True)
    defaults = {
        **estimator._backend_kwargs(),
        "poll_interval": estimator.batch_poll_interval,
        "max_enqueued_tokens": estimator.batch_max_enqueued_tokens,
    }
    return OpenAIBatchBackend(**{**defaults, **params})
