"""The contract every embedding backend fulfils, and the errors backends raise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "EmbeddingAPIError",
    "EmbeddingBackend",
    "EmbeddingError",
    "InputTooLongError",
    "ResultCallback",
]

#: Called by a backend each time a batch of vectors arrives:
#: ``on_result(positions, vectors)``, positions indexing the texts given to ``embed``.
ResultCallback = Callable[[np.ndarray, np.ndarray], None]


@runtime_checkable
class EmbeddingBackend(Protocol):
    """What the embedding job needs from a backend.

    A backend receives texts that are already validated and de-duplicated, returns one
    unit-norm float32 row per text, and hands each batch to ``on_result`` as soon as
    it arrives, so that the caller can store it before anything else can fail.
    """

    #: Identity of the vector space (endpoint without credentials, model, dimensions,
    #: model-file digest...): two backends with the same namespace return the same
    #: vector for the same text, so the cache keys on it.
    cache_namespace: str

    def embed(self, texts: Sequence[str], on_result: ResultCallback | None = None) -> np.ndarray:
        """Return an ``(len(texts), d)`` float32 array of unit-norm rows."""


class EmbeddingError(RuntimeError):
    """Base class of the errors raised while embedding.

    Parameters
    ----------
    message : str
        What went wrong, for a person.
    rows : sequence of int, optional
        Positions of the affected inputs. Backends report positions in the texts they
        were given; the estimators translate them into the user's row numbers.
    """

    def __init__(self, message, rows=()):
        super().__init__(message)
        self.message = message
        self.rows = tuple(int(r) for r in rows)

    def with_rows(self, rows, message):
        """Return a copy of this error naming other rows, with a new message."""
        error = type(self).__new__(type(self))
        error.__dict__.update(self.__dict__)
        EmbeddingError.__init__(error, message, rows)
        error.args = (message,)
        return error

    def __reduce__(self):
        # Keep subclasses picklable across processes (joblib workers re-raise them).
        return (_rebuild_error, (type(self), self.__dict__))


def _rebuild_error(cls, state):
    error = cls.__new__(cls)
    error.__dict__.update(state)
    error.args = (state["message"],)
    return error


class InputTooLongError(EmbeddingError, ValueError):
    """An input is longer than the model accepts and the policy is ``"error"``."""


class EmbeddingAPIError(EmbeddingError):
    """The embedding service refused a request and retrying cannot help.

    Attributes
    ----------
    status_code : int or None
        HTTP status of the last answer, ``None`` for a network failure.
    api_message : str
        The service's own explanation, with any credential removed.
    """

    def __init__(self, message, rows=(), *, status_code=None, api_message=""):
        super().__init__(message, rows)
        self.status_code = status_code
        self.api_message = api_message
