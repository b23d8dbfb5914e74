"""The contract every embedding backend fulfils, and the errors backends raise."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "BudgetExceededError",
    "EmbeddingAPIError",
    "EmbeddingBackend",
    "EmbeddingError",
    "InputTooLongError",
    "RequestMeter",
    "ResultCallback",
]

#: Called by a backend each time a batch of vectors arrives:
#: ``on_result(positions, vectors)``, positions indexing the texts given to ``embed``.
ResultCallback = Callable[[np.ndarray, np.ndarray], None]


@runtime_checkable
class EmbeddingBackend(Protocol):
    """The contract between the embedding job and a backend.

    skembed's own backends implement it: the OpenAI (and OpenAI-compatible, and
    Azure) endpoint, the OpenAI Batch API and the bundled local model. The embedding
    job, the cost estimates and the budgets read exactly these members, directly, so
    a backend that lacks one fails loudly instead of passing for "free, of unknown
    width". It is documented so that the plumbing can be read and tested against one
    contract; it is not an extension point yet: no public estimator accepts a backend
    object, and its members may change between releases.

    A backend receives texts that are already validated and de-duplicated, returns one
    unit-norm float32 row per text, and hands each batch to ``on_result`` as soon as
    it arrives, so that the caller can store it before anything else can fail. It
    resolves its model and the width of its vectors once, when it is built, and owns
    them.

    Attributes
    ----------
    cache_namespace : str
        Identity of the vector space (endpoint without credentials, model, width,
        model-file digest, long-input policy...): two backends with the same
        namespace return the same vector for the same text, so the cache keys on it.
        Fixed when the backend is built (a width learnt later does not change it).
    model_name : str
        The model, as reports and usage tables name it.
    n_dimensions : int or None
        Length of the vectors ``embed`` returns (and the cache stores). ``None`` while
        unknown (a model the registry does not know, whose width the user did not
        give): the backend then learns it from its first answer and keeps it, so it
        is an int after any ``embed`` that returned vectors. Such a backend also has
        ``use_recorded_width(width)``, by which the job hands it the width the cache
        recorded from an earlier answer, instead of paying for a text to learn it.
    pays_per_text : bool
        Whether embedding costs money per text (tokens billed by a service). If so,
        the job counts the tokens with ``count_billed_tokens`` and checks every budget
        before sending, passes ``embed`` a :class:`RequestMeter`, and processes
        sharing a cache claim the texts they fetch (others wait only for those) so
        that each text is paid once. A free backend (the local model) is never
        metered nor claimed for: processes fetch their cache misses in parallel (see
        ``skembed._embed``).
    usd_per_million_tokens : float or None
        Price of the tokens ``embed`` sends; ``None`` when unknown, ``0.0`` when free.
    resumable : bool
        Whether a job can outlive the process (the Batch API): its ``embed`` then
        accepts ``store=``, the job's cache (a ``CacheStore``, or ``None``), and keeps
        what resumes an interrupted job there (``store.state(name)``), next to the
        vectors it leads to.

    Examples
    --------
    >>> import numpy as np
    >>> from skembed.backends import EmbeddingBackend
    >>> class Constant:
    ...     cache_namespace = "constant"
    ...     model_name = "constant"
    ...     n_dimensions = 4
    ...     pays_per_text = False
    ...     usd_per_million_tokens = 0.0
    ...     resumable = False
    ...     def check_inputs(self, texts):
    ...         pass
    ...     def count_billed_tokens(self, texts):
    ...         return np.zeros(len(texts), dtype=np.int64)
    ...     def embed(self, texts, on_result=None, meter=None):
    ...         vectors = np.full((len(texts), 4), 0.5, dtype=np.float32)
    ...         if on_result is not None:
    ...             on_result(np.arange(len(texts)), vectors)
    ...         return vectors
    >>> isinstance(Constant(), EmbeddingBackend)
    True
    """

    cache_namespace: str
    model_name: str
    n_dimensions: int | None
    pays_per_text: bool
    usd_per_million_tokens: float | None
    resumable: bool

    def check_inputs(self, texts: Sequence[str]) -> None:
        """Refuse the texts that ``embed`` would refuse for what they are, before any work.

        The job calls it on every distinct text of a call, cached or not, before it
        reads the cache, so that a call's outcome never depends on what the cache holds
        (a long text cached under ``long_input="truncate"`` is still refused under
        ``"error"``). It must be cheap for ordinary texts; a backend that refuses no
        text for its content does nothing.

        Parameters
        ----------
        texts : sequence of str
            Validated, distinct texts.

        Raises
        ------
        InputTooLongError
            For texts over the model's limit under ``long_input="error"``; ``rows``
            holds their positions.
        """

    def count_billed_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Count the tokens that embedding each text would send (long-input policy applied).

        Exactly what the service counts (and bills) when every request succeeds
        first time; zeros for a free backend.

        Parameters
        ----------
        texts : sequence of str
            Validated, distinct texts.

        Returns
        -------
        ndarray of shape (len(texts),), dtype int64
            Tokens per text.
        """

    def embed(
        self,
        texts: Sequence[str],
        on_result: ResultCallback | None = None,
        meter: RequestMeter | None = None,
    ) -> np.ndarray:
        """Embed texts.

        Parameters
        ----------
        texts : sequence of str
            Validated, distinct texts.
        on_result : callable, default=None
            Called as ``on_result(positions, vectors)`` with each batch of vectors as
            it arrives, ``positions`` indexing ``texts``.
        meter : RequestMeter, default=None
            For a backend that pays per text: it reserves every request it makes
            (retries included) on the meter, which stops the job before a request
            would cross its limit. A free backend ignores it.

        Returns
        -------
        ndarray of shape (len(texts), n_dimensions), dtype float32
            One unit-norm row per text.
        """


class EmbeddingError(RuntimeError):
    """Base class of the errors raised while embedding.

    Parameters
    ----------
    message : str
        What went wrong, for a person.
    rows : sequence of int, optional
        Positions of the affected inputs. Backends report positions in the texts they
        were given; the estimators translate them into the user's row numbers.

    Examples
    --------
    >>> from skembed.backends import EmbeddingError
    >>> error = EmbeddingError("2 rows failed", rows=[7, 3])
    >>> error.rows
    (7, 3)
    """

    def __init__(self, message, rows=()):
        super().__init__(message)
        self.message = message
        self.rows = tuple(int(r) for r in rows)

    def with_rows(self, rows, message):
        """Return a copy of this error naming other rows, with a new message.

        Parameters
        ----------
        rows : sequence of int
            Positions of the affected inputs.
        message : str
            The new message.

        Returns
        -------
        EmbeddingError
            An error of the same class, with the same other attributes.
        """
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
    """An input is longer than the model accepts and the policy is ``"error"``.

    Also a ``ValueError``: the input, not the service, is at fault.

    Parameters
    ----------
    message : str
        What went wrong, naming the limit.
    rows : sequence of int, optional
        Positions of the inputs over the limit.

    Examples
    --------
    >>> from skembed.backends import InputTooLongError
    >>> error = InputTooLongError("1 text(s) exceed the model's limit", rows=[4])
    >>> isinstance(error, ValueError), error.rows
    (True, (4,))
    """


class EmbeddingAPIError(EmbeddingError):
    """The embedding service refused a request and retrying cannot help.

    Parameters
    ----------
    message : str
        What went wrong, for a person.
    rows : sequence of int, optional
        Positions of the affected inputs.
    status_code : int, default=None
        HTTP status of the last answer.
    api_message : str, default=""
        The service's own explanation.

    Attributes
    ----------
    status_code : int or None
        HTTP status of the last answer, ``None`` for a network failure.
    api_message : str
        The service's own explanation, with any credential removed.

    Examples
    --------
    >>> from skembed.backends import EmbeddingAPIError
    >>> error = EmbeddingAPIError("HTTP 400: invalid input", rows=[2], status_code=400)
    >>> error.status_code, error.rows
    (400, (2,))
    """

    def __init__(self, message, rows=(), *, status_code=None, api_message=""):
        super().__init__(message, rows)
        self.status_code = status_code
        self.api_message = api_message


class BudgetExceededError(EmbeddingError):
    """Sending the texts still to embed would cross a spending limit.

    Raised before the request that would cross it; every vector received until then
    is in the cache, so raising the limit (or re-running a smaller job) pays only for
    the rest.

    Parameters
    ----------
    message : str
        What went wrong, for a person.
    rows : sequence of int, optional
        Positions of the inputs not embedded.

    Attributes
    ----------
    limit : float
        The limit, in ``unit``.
    needed : float
        What the job would spend in all, in ``unit`` (what was already spent under the
        limit plus what is still to send).
    unit : {"tokens", "USD"}
        Unit of ``limit`` and ``needed``.

    Examples
    --------
    >>> from skembed.backends._base import BudgetExceededError
    >>> error = BudgetExceededError("over budget", limit=1000, needed=1200)
    >>> error.limit, error.needed, error.unit
    (1000, 1200, 'tokens')
    """

    def __init__(self, message, rows=(), *, limit=None, needed=None, unit="tokens"):
        super().__init__(message, rows)
        self.limit = limit
        self.needed = needed
        self.unit = unit


class RequestMeter:
    """Counts one job's requests and tokens, and stops it at a token limit.

    A backend that bills calls :meth:`reserve` right before each HTTP request (every
    attempt, retries included) and :meth:`settle` with what became of it. Tokens of a
    request the service answered with an error are released (the API does not bill
    them); tokens of a request whose answer never came (timeout, dropped connection)
    stay counted, since the service may have billed them. Thread-safe.

    Parameters
    ----------
    limit : int or None, default=None
        Most tokens the job may send in all; ``None`` means no limit.

    Attributes
    ----------
    requests : int
        HTTP requests made, retries included.
    tokens : int
        Tokens of the requests that succeeded (what the service bills).
    tokens_unsure : int
        Tokens of the requests whose answer was lost (perhaps billed).

    Examples
    --------
    >>> meter = RequestMeter(limit=100)
    >>> meter.reserve(60)
    >>> meter.settle(60, billed=False)  # an HTTP error: not billed, may be retried
    >>> meter.reserve(60)
    >>> meter.settle(60, billed=True)
    >>> meter.requests, meter.tokens
    (2, 60)
    """

    def __init__(self, limit=None):
        self.limit = limit
        self.requests = 0
        self.tokens = 0
        self.tokens_unsure = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def committed(self):
        """Tokens billed, perhaps billed, or in flight."""
        return self.tokens + self.tokens_unsure + self._in_flight

    def reserve(self, n_tokens):
        """Count a request of ``n_tokens`` about to be sent, or raise if over the limit.

        Raises
        ------
        BudgetExceededError
            If sending it could take the job over ``limit`` tokens.
        """
        with self._lock:
            if self.limit is not None and self.committed + n_tokens > self.limit:
                raise BudgetExceededError(
                    f"Stopped before a request of {n_tokens:,} tokens: with "
                    f"{self.committed:,} tokens already billed, perhaps billed or in flight "
                    f"(failed requests retried), the job would pass its limit of "
                    f"{self.limit:,} tokens. Vectors received so far are cached; raise the "
                    "limit and run again to pay only for the rest.",
                    limit=self.limit,
                    needed=self.committed + n_tokens,
                    unit="tokens",
                )
            self.requests += 1
            self._in_flight += n_tokens

    def settle(self, n_tokens, billed, n_billed=None):
        """Record the fate of a reserved request.

        Parameters
        ----------
        n_tokens : int
            Its tokens, as given to :meth:`reserve`.
        billed : bool or None
            ``True``: answered with vectors; ``False``: answered with an error (not
            billed); ``None``: no answer (perhaps billed).
        n_billed : int, default=None
            What the request bills, when :meth:`reserve` was given an upper bound of it
            (a request sent before its texts were counted); ``None``: ``n_tokens``.
        """
        n_billed = n_tokens if n_billed is None else n_billed
        with self._lock:
            self._in_flight -= n_tokens
            if billed:
                self.tokens += n_billed
            elif billed is None:
                self.tokens_unsure += n_billed
