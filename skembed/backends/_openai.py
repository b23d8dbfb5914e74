"""OpenAI (and OpenAI-compatible, and Azure OpenAI) embeddings over the official SDK.

The SDK does the HTTP; this module decides what to send and what to do with each
answer: requests planned within the API's limits, several in flight at once, paced by
the account's rate limits, retried where retrying can help (429, 5xx, timeouts, dropped
connections) and nowhere else, and answered vectors handed to the caller as each
request returns. The SDK's own retries are switched off (``max_retries=0``) because a
429 must pause *every* sender of the job, which only a shared limiter can do.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._fork import PerProcess
from .._math import normalize_rows_checked
from .._models import MAX_INPUTS_PER_REQUEST, MAX_TOKENS_PER_REQUEST, resolve_model
from .._tokens import count_tokens
from ._answers import (
    _Assembler,
    _BadBody,
    _hand_on_paid,
    _index_problem,
    _Malformed,
    _Outcome,
    _RequestFailed,
    _RowsRefused,
    _Stopped,
    _wire_matrix,
)
from ._base import EmbeddingAPIError, InputTooLongError, RequestMeter
from ._endpoint import endpoint_identity, resolve_endpoint
from ._fingerprint import PROBE_TEXT, resolve_revision
from ._http import (
    BodyRefused,
    header_value_problem,
    hide_url_secrets_in_http_logs,
    read_body,
    refuse_url_credentials,
)
from ._planner import plan_pieces, plan_requests
from ._progress import progress_bar
from ._rate_limit import MAX_WAIT, RateLimiter
from ._retry import _RETRYABLE_STATUS, _api_message, _backoff, _retry_after
from ._signals import CHECK_SECONDS, DeferredInterrupts

__all__ = ["OpenAIBackend", "endpoint_identity", "resolve_endpoint"]

#: Keep each request this far under the API's 300k-token cap, so that a server whose
#: tokenizer counts slightly differently from tiktoken still accepts it.
TOKEN_MARGIN = 0.9
#: The first request of a job whose account's limits are not known yet goes alone, with
#: at most this many inputs and UTF-8 bytes (so tokens): see ``OpenAIBackend._probe_size``.
PROBE_MAX_INPUTS = 16
PROBE_MAX_BYTES = 4096
#: Once the account's token burst is known, no request asks for more than this share.
REQUEST_SHARE_OF_BURST = 0.5
#: Seconds an interrupted job waits for its requests in flight beyond their own
#: ``timeout`` (the watchdog that ends a late body needs a moment).
_DRAIN_SLACK = 0.5
#: Bytes a response body may take per float of its vectors, by encoding: a JSON number
#: written in full (``-1.2345678901234567e-30``) with pretty-printing room, and base64's
#: 4/3 of the float's 4 bytes, both with slack; plus room for each item and the rest.
_BODY_BYTES_PER_FLOAT = {"float": 48, "base64": 8}
_BODY_BYTES_PER_ITEM = 1024
_BODY_BYTES_BASE = 1 << 20
#: The width assumed for the body cap while a model's width is unknown.
_BODY_UNKNOWN_WIDTH = 16_384


class OpenAIBackend:
    """Embeds texts through an OpenAI-compatible ``/embeddings`` endpoint.

    Parameters are :class:`skembed.OpenAIEmbeddingTransformer`'s, which documents them
    and gives their defaults (a backend has none of its own: the estimator passes every
    one), with ``progress`` for its ``verbose``. The API key is read from the
    environment when the first request is made and lives only inside the SDK client,
    which this object never pickles.

    The model and the width are resolved here, once, and owned here: every error about
    them (``dimensions`` refused by the model, larger than its native size,
    ``dimensions_from_full`` for a model whose short vectors are not truncations) is
    raised when the backend is built, that is by the estimator's ``fit``,
    ``transform`` and ``estimate_cost``.

    Attributes
    ----------
    info : ModelInfo
        The model's facts (:func:`skembed._models.resolve_model`); ``info.native_dim``
        is the model's own width, a fact of the model.
    model_name : str
        The model's name, as sent to the API.
    n_dimensions : int or None
        Width of the vectors :meth:`embed` returns and the cache stores: the requested
        width, or the model's native one when it is not sent (or shortened locally).
        ``None`` until the first answer for a model of unknown width.
    shorten_to : int or None
        With ``dimensions_from_full``: the width the estimator cuts the returned full
        vectors to (and re-normalises); ``None`` when the vectors are used as returned.
    """

    pays_per_text = True
    resumable = False

    def __init__(
        self,
        *,
        model,
        dimensions,
        dimensions_from_full,
        base_url,
        api_key_env,
        organization,
        api_version,
        batch_size,
        max_concurrency,
        max_retries,
        timeout,
        long_input,
        encoding_format,
        usd_per_million_tokens,
        rate_limiter,
        progress,
        model_revision,
        fingerprint,
    ):
        refuse_url_credentials(base_url, "base_url")
        self.info = resolve_model(model, dimensions=dimensions)
        self.model_name = self.info.name
        self.shorten_to = None
        if dimensions_from_full and dimensions is not None:
            if not self.info.dimensions_is_truncation:
                raise ValueError(
                    f"dimensions_from_full=True needs a model whose shortened vectors are "
                    f"truncations of the full one (text-embedding-3-*); {model!r} is not "
                    "known to be one."
                )
            self.shorten_to = dimensions
        # The API's ``dimensions`` parameter, or None when it is not sent: the native
        # width, full vectors to shorten locally, or a model that does not take it (an
        # unknown model's ``dimensions`` only states the width its server returns).
        self._sent_dimensions = (
            dimensions if self.shorten_to is None and self.info.supports_dimensions else None
        )
        self.n_dimensions = self._sent_dimensions or self.info.native_dim
        self._width_lock = threading.Lock()
        #: Price of the tokens this backend sends (the registry's list price unless
        #: overridden; ``None`` when unknown). Read by cost estimates and budgets.
        self.usd_per_million_tokens = (
            self.info.usd_per_million_tokens
            if usd_per_million_tokens is None
            else float(usd_per_million_tokens)
        )
        self.base_url = base_url
        self.api_version = api_version
        # Resolved once, here, and handed to the SDK as it is: the cache identity and
        # the client then name the same server, whatever the environment says later.
        self._endpoint = resolve_endpoint(base_url, api_version)
        self.api_key_env = api_key_env or (
            "AZURE_OPENAI_API_KEY" if api_version else "OPENAI_API_KEY"
        )
        self.organization = organization
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.long_input = long_input
        self.encoding_format = encoding_format
        self.progress = progress
        self.rate_limiter = rate_limiter
        # Shared by this backend's calls: its buckets live in Redis, not in the object.
        self._shared_limiter = None
        if rate_limiter is not None:
            from ._redis_rate_limit import rate_limiter_from_url

            account = "|".join(
                ["openai", endpoint_identity(base_url, api_version), organization or "", model]
            )
            self._shared_limiter = rate_limiter_from_url(rate_limiter, account)
        # Fixed here: a width learnt later (from the first answer) does not move the
        # vectors of a model of unknown width to another namespace.
        identity = endpoint_identity(self._endpoint, api_version)
        parts = ["openai", identity, model, str(self.n_dimensions)]
        # A text within the limit gets the same vector under every policy, so "error"
        # shares "truncate"'s space: the job asks ``check_inputs`` to refuse a long text
        # before reading the cache, where a truncated vector of it may be. "chunk"
        # differs on long texts and gets its own.
        if long_input == "chunk":
            parts.append("long_input=chunk")
        if model_revision is not None:
            # The user's name for the weights behind the model name: other weights,
            # another vector space.
            parts.append(f"revision={model_revision}")
        self.model_revision = model_revision
        self.fingerprint = bool(fingerprint)
        self._base_namespace = "|".join(parts)
        self._fingerprint_id = None
        # Each process its own client and connections (see skembed._fork).
        self._client = PerProcess()

    @property
    def cache_namespace(self):
        """The vector space's identity; with ``fingerprint``, once the weights are known."""
        if not self.fingerprint:
            return self._base_namespace
        if self._fingerprint_id is None:
            raise RuntimeError(
                "fingerprint=True: the cache namespace is not known before the model's "
                "probe vector is (resolve_fingerprint(store) must run first)."
            )
        return f"{self._base_namespace}|fingerprint={self._fingerprint_id}"

    def resolve_fingerprint(self, store):
        """Embed the probe text (once per process and vector space) and name its weights.

        Parameters
        ----------
        store : CacheStore or None
            The cache whose vectors the namespace leads to; it keeps the probe
            vectors met so far (see :mod:`skembed.backends._fingerprint`).
        """
        if not self.fingerprint:
            return
        # A plain request even for the Batch API: one short text, answered at once.
        self._fingerprint_id = resolve_revision(
            self._base_namespace,
            lambda: OpenAIBackend.embed(self, [PROBE_TEXT])[0],
            store,
        )

    # -- the SDK client ---------------------------------------------------------------

    def _api_key(self):
        if not _ENV_NAME.fullmatch(self.api_key_env):
            # Never echoed: a value that is not a variable name is often the key itself.
            raise EmbeddingAPIError(
                "api_key_env must be the name of an environment variable (letters, digits "
                "and underscores), such as 'OPENAI_API_KEY'; the value given is not one. "
                "Put the key in that variable, never in a parameter."
            )
        key = os.environ.get(self.api_key_env, "")
        if not key.strip():
            raise EmbeddingAPIError(
                f"No API key: the environment variable {self.api_key_env} is not set. "
                "Set it (or name another variable with api_key_env=...) before embedding "
                "texts that are not in the cache."
            )
        problem = header_value_problem(key)
        if problem is not None:
            # Raised here, before any request: the HTTP client would refuse the header
            # (a "connection error", retried for a minute) or quote it in its error.
            raise EmbeddingAPIError(
                f"The API key in the environment variable {self.api_key_env} {problem}; "
                "nothing was sent. Fix the variable's value (the key itself is not shown)."
            ) from None
        return key

    def client(self):
        """This process's SDK client, built on first use (thread-safe).

        A forked child builds its own: the parent's keep-alive connections carry the
        answers of the parent's (and its other children's) requests.
        """
        return self._client.get(self._build_client)

    def _build_client(self):
        import openai

        hide_url_secrets_in_http_logs()
        env = "AZURE_OPENAI_ENDPOINT" if self.api_version else "OPENAI_BASE_URL"
        if not self.base_url:
            refuse_url_credentials(os.environ.get(env), f"${env}")
        common = {"api_key": self._api_key(), "max_retries": 0, "timeout": self.timeout}
        if self.api_version:
            return openai.AzureOpenAI(
                azure_endpoint=self._endpoint, api_version=self.api_version, **common
            )
        if self._endpoint is None and os.environ.get("OPENAI_BASE_URL"):
            # The SDK would read it now and send to a server whose vectors would be cached
            # under the identity fixed when this backend was built (OpenAI's own API).
            raise ValueError(
                "$OPENAI_BASE_URL was set after this embedder's settings were fixed; set it "
                "before creating the embedder, or pass base_url=..."
            )
        return openai.OpenAI(base_url=self._endpoint, organization=self.organization, **common)

    def _scrub(self, message):
        """Remove the API key from a message that came from elsewhere."""
        key = os.environ.get(self.api_key_env, "")
        return message.replace(key, "***") if len(key) >= 4 else message

    # -- one HTTP request, with retries -----------------------------------------------

    def _request_body(self, texts):
        """The body of an embeddings request for ``texts`` (online or a Batch API line)."""
        body = {"model": self.model_name, "input": texts, "encoding_format": self.encoding_format}
        if self._sent_dimensions is not None:
            body["dimensions"] = self._sent_dimensions
        return body

    def _post(self, texts, n_tokens, limiter, stop, meter, bounded=False):
        """Send one request until it succeeds, fails for good, or the job stops.

        Every wait (for the rate limiter, after a 429, between retries) lasts at most
        ``min(timeout, MAX_WAIT)``, and each attempt at most ``timeout``: a request
        ends within ``(1 + max_retries)`` times their sum, whatever the server sends.

        ``bounded``: ``n_tokens`` is an upper bound of whole texts' tokens, taken from
        the limiter and reserved as such; what the answer charges (the meter's tokens,
        what the limiter learns) is their exact count, made once it is known.
        """
        import openai

        params = self._request_body(texts)
        client = self.client()
        max_wait = min(MAX_WAIT, self.timeout)
        attempt = 0
        exact = None

        def charged():
            nonlocal exact
            if exact is None:
                exact = int(count_tokens(texts, self.info.encoding).sum()) if bounded else n_tokens
            return exact

        while True:
            if not limiter.acquire(n_tokens, stop, max_wait):
                raise _Stopped
            meter.reserve(n_tokens)
            try:
                headers, content = self._send(client, params, len(texts))
            except openai.APIStatusError as error:
                meter.settle(n_tokens, billed=False)
                headers = error.response.headers
                limiter.observe(headers)
                message = self._scrub(_api_message(error))
                status = error.status_code
                if status == 429 and "too large" in message.lower():
                    raise _RequestFailed(status, message, too_large=True) from None
                # An exhausted quota is a 429 too, but only the account owner can end it.
                fatal = status not in _RETRYABLE_STATUS and status < 500
                if fatal or error.code == "insufficient_quota":
                    raise _RequestFailed(status, message) from None
                delay = _retry_after(headers, max_wait)
                if status == 429:
                    # Everyone waits: the account, not this request, is over its limit.
                    limiter.pause(delay if delay is not None else _backoff(attempt, max_wait))
                failure = (status, message)
            except openai.APIConnectionError as error:  # includes APITimeoutError
                meter.settle(n_tokens, billed=None, n_billed=charged())
                delay, failure = None, (None, self._scrub(str(error) or type(error).__name__))
            except _BadBody as error:
                # A 200 (billed) whose body came too slowly, too large, or cut off.
                meter.settle(n_tokens, billed=True, n_billed=charged())
                limiter.observe(error.headers, charged())
                delay, failure = None, (None, error.message)
            else:
                meter.settle(n_tokens, billed=True, n_billed=charged())
                limiter.observe(headers, charged())
                return self._decode(content, len(texts))
            attempt += 1
            if attempt > self.max_retries:
                status, message = failure
                raise _RequestFailed(
                    status, f"gave up after {self.max_retries} retries; last error: {message}"
                )
            if stop.wait(delay if delay is not None else _backoff(attempt - 1, max_wait)):
                raise _Stopped

    def _send(self, client, params, n_inputs):
        """One HTTP request: its headers and body, all within ``timeout`` seconds.

        The SDK's ``timeout`` bounds each read, not the answer: a server that trickles
        its body would hold the request for as long as it likes. The body is read in
        chunks against a deadline (and a size cap, :meth:`_body_limit`), and the socket
        is shut when the deadline passes, so a read that blocks ends too.
        """
        deadline = time.monotonic() + self.timeout
        with client.embeddings.with_streaming_response.create(**params) as response:
            try:
                content = read_body(
                    response,
                    deadline=deadline,
                    timeout=self.timeout,
                    limit=self._body_limit(n_inputs),
                    what=f"{n_inputs} embedding(s)",
                    scrub=self._scrub,
                )
            except BodyRefused as error:
                raise _BadBody(response.headers, error.message) from None
            return response.headers, content

    def _body_limit(self, n_inputs):
        """The most bytes an answer to ``n_inputs`` inputs may take: generous, bounded."""
        width = self.n_dimensions or _BODY_UNKNOWN_WIDTH
        per_float = _BODY_BYTES_PER_FLOAT.get(self.encoding_format, 48)
        return _BODY_BYTES_BASE + n_inputs * (_BODY_BYTES_PER_ITEM + width * per_float)

    def _decode(self, content, n_inputs):
        """Parse a response body into ``(n_inputs, d)`` unit rows, ordered by ``index``."""
        try:
            body = json.loads(content)
        except ValueError as error:
            raise _Malformed(f"malformed response ({error})") from None
        return self._decode_body(body, n_inputs)

    def _decode_body(self, body, n_inputs):
        """:meth:`_decode` of an already parsed body (the Batch API's output lines).

        Returns float32 rows of unit norm, in input order. The answer as a whole is
        refused (:class:`_Malformed`) when it is not one vector of one width per
        input, indexed by the integers ``0..n_inputs - 1`` each once: a fractional,
        repeated or missing ``index`` is never rounded or guessed. A vector that cannot
        be normalised (zeros, a NaN or an infinity, entries too small to carry a
        direction) refuses only its own row: :class:`_RowsRefused` carries the others.
        """
        try:
            items = body["data"]
            if not isinstance(items, list):
                raise TypeError("'data' is not a list")
            order = [item["index"] for item in items]
            rows = [item["embedding"] for item in items]
        except (KeyError, TypeError) as error:
            raise _Malformed(f"malformed response ({error!r})") from None
        problem = _index_problem(order, n_inputs)
        if problem:
            raise _Malformed(
                f"malformed response: expected {n_inputs} embeddings indexed "
                f"0..{n_inputs - 1}, {problem}",
            )
        vectors = _wire_matrix(rows)
        self._check_width(vectors.shape[1])
        unit, refused = normalize_rows_checked(vectors)
        result = np.empty_like(unit)
        result[order] = unit
        if refused:
            raise _RowsRefused(result, {order[row]: why for row, why in refused.items()})
        return result

    def _check_width(self, width):
        """Refuse vectors of another width than this backend's; learn it if unknown."""
        with self._width_lock:
            if self.n_dimensions is None:
                # A model of unknown width: its first answer says it, and it is kept, so
                # that later calls read the cache at this width without a probe (and the
                # job records it in the cache, for clones, folds and other processes).
                self.n_dimensions = width
            elif width != self.n_dimensions:
                raise _RequestFailed(
                    None,
                    f"the server returned {width}-d vectors, but {self.n_dimensions} "
                    f"were expected for model {self.model_name!r}{self._width_origin}",
                )

    #: Where an expected width came from, when not from the model's facts or an answer.
    _width_origin = ""

    def use_recorded_width(self, width):
        """Take the width the cache recorded for this model of unknown width.

        The embedding job calls it instead of paying for a text to learn the width: the
        cache recorded it from this vector space's first answer. Answers of another
        width are then refused, naming the record.

        Parameters
        ----------
        width : int
            The recorded width.
        """
        with self._width_lock:
            if self.n_dimensions is None:
                self.n_dimensions = width
                self._width_origin = (
                    " (the width the cache recorded from this model's first answer; if "
                    "the model changed, pass dimensions=<its width> to embed into a new "
                    "vector space, or clear the cache)"
                )

    # -- a planned request, split when the service says so -----------------------------

    def _run(self, pieces, texts, n_tokens, limiter, stop, meter, bounded=False):
        """Embed one planned request; returns its outcomes (several if it was split).

        ``bounded``: ``n_tokens`` are upper bounds of whole texts' counts (see
        :meth:`_probe_bounds`), counted exactly once answered.
        """
        result = self._attempt(pieces, texts, n_tokens, limiter, stop, meter, bounded)
        if isinstance(result, _RequestFailed):
            result = self._split(pieces, result, texts, n_tokens, limiter, stop, meter, bounded)
        if any(outcome.error is not None for outcome in result):
            # The job stops at its first error; stopping it here, in the worker, keeps
            # this thread from sending the next queued request before the main thread
            # has heard of the error.
            stop.set()
        return result

    def _attempt(self, pieces, texts, n_tokens, limiter, stop, meter, bounded=False):
        """One request (with its retries): its outcomes, a failure, or [] if stopped."""
        try:
            batch = [texts[i] for i in pieces]
            n_batch = int(n_tokens[pieces].sum())
            vectors = self._post(batch, n_batch, limiter, stop, meter, bounded)
        except _RowsRefused as refused:
            # Paid for: keep the good rows; the others are refused (named at the end).
            return refused.outcomes(pieces)
        except _RequestFailed as failure:
            return failure
        except _Stopped:
            return []
        return [_Outcome(pieces, vectors=vectors)]

    def _split(self, pieces, failure, texts, n_tokens, limiter, stop, meter, bounded=False):
        """Narrow a refused request down to the inputs at fault, keeping the rest.

        A request too large for the rate limit is halved until it passes; a 400 is
        halved to find the rows the API rejects. When both halves of a 400 fail with the
        request's own message, the fault is the request (a parameter), not a row, and
        splitting stops: a row at fault costs about two requests per halving, a
        request-wide fault two requests in all.
        """
        if len(pieces) == 1 or not (failure.too_large or failure.status == 400):
            return [_Outcome(pieces, error=self._error(failure, pieces))]
        halves = (pieces[: len(pieces) // 2], pieces[len(pieces) // 2 :])
        results = [
            self._attempt(half, texts, n_tokens, limiter, stop, meter, bounded) for half in halves
        ]
        if failure.status == 400 and all(
            isinstance(r, _RequestFailed) and r.message == failure.message for r in results
        ):
            return [_Outcome(pieces, error=self._error(failure, pieces))]
        outcomes = []
        for half, result in zip(halves, results, strict=True):
            if isinstance(result, _RequestFailed):
                outcomes += self._split(
                    half, result, texts, n_tokens, limiter, stop, meter, bounded
                )
            else:
                outcomes += result
        return outcomes

    def _error(self, failure, pieces):
        status = f"HTTP {failure.status}" if failure.status else "no answer"
        if isinstance(failure, _Malformed):
            status = "malformed answer"
        if failure.status in (401, 403):
            message = (
                f"The embeddings API refused the API key read from ${self.api_key_env} "
                f"({status}): {failure.message}"
            )
            return EmbeddingAPIError(
                message, status_code=failure.status, api_message=failure.message
            )
        if failure.status == 404:
            message = f"Model {self.model_name!r} not found ({status}): {failure.message}"
            return EmbeddingAPIError(message, status_code=404, api_message=failure.message)
        message = f"The embeddings API failed ({status}): {failure.message}"
        return EmbeddingAPIError(
            message, rows=pieces, status_code=failure.status, api_message=failure.message
        )

    # -- the whole job ------------------------------------------------------------------

    def _drain(self, requests, answers, ended, interrupts):
        """Wait for ``requests`` (numbers) still running to end, for at most ``timeout`` s.

        ``answers`` holds the outcomes of those that ended; ``ended`` (see
        :func:`_answering`) says when one more does. A Ctrl-C (``interrupts``) ends it.
        """
        deadline = time.monotonic() + self.timeout + _DRAIN_SLACK
        while any(number not in answers for number in requests):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(queue.Empty):
                ended.get(timeout=min(left, CHECK_SECONDS))
            interrupts.check()

    def _pieces(self, texts):
        """The inputs that embedding ``texts`` sends, each with its exact token count."""
        counts = count_tokens(texts, self.info.encoding)
        return plan_pieces(
            texts,
            counts,
            max_input_tokens=self.info.max_input_tokens,
            long_input=self.long_input,
            encoding=self.info.encoding,
        )

    def check_inputs(self, texts):
        """Refuse what ``embed`` would refuse, cached or not: long texts under "error".

        A token is at least one byte of UTF-8, so only texts longer than the model's
        limit in bytes are counted: checking a corpus of ordinary texts costs no
        tokenizing.

        Parameters
        ----------
        texts : sequence of str
            Distinct, valid texts.

        Raises
        ------
        InputTooLongError
            If ``long_input="error"`` and a text is over the model's limit; ``rows``
            holds their positions in ``texts``.
        """
        if self.long_input != "error":
            return
        limit = self.info.max_input_tokens
        # 4 * characters >= UTF-8 bytes >= tokens: the first test is free.
        candidates = np.array(
            [
                i
                for i, text in enumerate(texts)
                if 4 * len(text) > limit and len(text.encode("utf-8", "surrogatepass")) > limit
            ],
            dtype=np.intp,
        )
        if not len(candidates):
            return
        try:
            self.count_billed_tokens([texts[i] for i in candidates])
        except InputTooLongError as error:
            raise error.with_rows(candidates[list(error.rows)], error.message) from None

    def count_billed_tokens(self, texts):
        """Tokens that embedding each text sends, after the ``long_input`` policy.

        Exactly what the API counts (and bills) when every request succeeds first time.

        Parameters
        ----------
        texts : sequence of str
            Distinct, valid texts.

        Returns
        -------
        ndarray of shape (len(texts),), dtype int64

        Raises
        ------
        InputTooLongError
            If a text is over the model's limit and ``long_input="error"``.
        """
        pieces = self._pieces(texts)
        owners = np.fromiter((p.owner for p in pieces), dtype=np.intp, count=len(pieces))
        tokens = np.fromiter((p.n_tokens for p in pieces), dtype=np.int64, count=len(pieces))
        return np.bincount(owners, weights=tokens, minlength=len(texts)).astype(np.int64)

    def _probe_size(self, texts, limiter):
        """How many leading texts to send first, alone: all of them once limits are known.

        A job whose account's limits are not known yet (a fresh limiter, a server that
        has not answered) first sends one small request of its leading texts (at most
        :data:`PROBE_MAX_INPUTS`, :data:`PROBE_MAX_BYTES` of UTF-8, so at most that many
        tokens), and the rest only once its answer's headers told the limits: a first
        wave sent blind overshoots a small limit (a 429 per request, or "too large"
        for requests bigger than the limit's burst). The probe costs no time in
        practice: it is sent on upper bounds of its tokens (:meth:`_probe_bounds`),
        and every text is counted while it is out. A job of fewer than
        twice that many texts is planned as one request (unless its texts are long),
        with no first wave to protect, and is not probed.
        """
        if len(texts) < 2 * PROBE_MAX_INPUTS or limiter.token_capacity() is not None:
            return len(texts)
        n_head, size = 0, 0
        limit = min(PROBE_MAX_INPUTS, self.batch_size, MAX_INPUTS_PER_REQUEST)
        for text in texts[:limit]:
            size += len(text.encode("utf-8", "surrogatepass"))
            if n_head and size > PROBE_MAX_BYTES:
                break
            n_head += 1
        return n_head

    def _probe_bounds(self, probe, meter):
        """Upper bounds of the probe's tokens, its texts' UTF-8 bytes; ``None`` if unfit.

        A token is at least one byte, so the probe can be planned and sent on these
        before its texts are counted, and counted exactly once answered (see
        :meth:`_post`). Only for a probe of whole texts (none is over the model's
        limit, even in bytes) and a job with no token limit: a bound reserved against
        a limit could stop a job that fits.
        """
        if meter.limit is not None:
            return None
        bounds = np.fromiter(
            (len(text.encode("utf-8", "surrogatepass")) for text in probe),
            dtype=np.int64,
            count=len(probe),
        )
        return bounds if bounds.max(initial=0) <= self.info.max_input_tokens else None

    def _plan(self, piece_tokens, limiter, min_requests):
        """Requests of consecutive inputs within the API's limits and the account's."""
        max_tokens = int(MAX_TOKENS_PER_REQUEST * TOKEN_MARGIN)
        capacity = limiter.token_capacity()
        if capacity is not None and math.isfinite(capacity):
            # Requests of at most half the account's burst: a request bigger than the
            # burst is refused ("too large"), and one of all of it waits for an empty
            # bucket to refill completely.
            max_tokens = min(max_tokens, int(capacity * REQUEST_SHARE_OF_BURST))
        if len(piece_tokens):
            max_tokens = max(max_tokens, int(piece_tokens.max()))
        return plan_requests(
            piece_tokens,
            max_inputs=min(self.batch_size, MAX_INPUTS_PER_REQUEST),
            max_tokens=max_tokens,
            min_requests=min_requests,
        )

    def _pieces_after(self, texts, start):
        """:meth:`_pieces` of ``texts[start:]``, as arrays, owners counted from ``start``."""
        pieces = self._pieces(texts[start:])
        return (
            [p.text for p in pieces],
            np.array([p.n_tokens for p in pieces], dtype=np.int64),
            np.array([p.owner + start for p in pieces], dtype=np.intp),
        )

    def embed(self, texts, on_result=None, meter=None):
        """Embed ``texts`` (distinct, valid); see :class:`EmbeddingBackend`.

        ``meter``, a :class:`RequestMeter`, counts the requests and tokens sent and
        stops the job before a request would cross its limit.
        """
        meter = RequestMeter() if meter is None else meter
        limiter = self._shared_limiter if self.rate_limiter is not None else RateLimiter()
        n_head = self._probe_size(texts, limiter)
        probing = n_head < len(texts)
        if probing:
            # Nothing is sent when a text is refused, the probe included.
            self.check_inputs(texts)
        probe_bounds = self._probe_bounds(texts[:n_head], meter) if probing else None
        if probe_bounds is None:
            piece_texts, piece_tokens, owners = self._pieces_after(texts[:n_head], 0)
        else:
            # Sent before the tokenizer is even loaded (a few tenths of a second in a
            # fresh process): it loads while the probe is out.
            piece_texts, piece_tokens = list(texts[:n_head]), probe_bounds
            owners = np.arange(n_head, dtype=np.intp)
        self.client()  # no key: fail here, before any thread starts
        # Texts whose storing has returned: an interrupt may land anywhere (inside
        # on_result, or while an answer is half added), so what it hands on is worked
        # out again from the requests themselves (`_hand_on_paid`), less these.
        delivered = np.zeros(len(texts), dtype=bool)

        def deliver(positions, vectors):
            on_result(positions, vectors)
            delivered[positions] = True

        stop = threading.Event()
        errors = []
        assembler = None  # built once every text is counted
        # Each request's outcomes by its number, written by its worker as it ends, and
        # its number then put in `ended`. The main thread waits on that queue, and
        # takes Ctrl-C only there (`DeferredInterrupts`, whose module says why), never
        # touching the futures' locks.
        answers = {}
        ended = queue.SimpleQueue()

        def fail(error):
            # The first error stops the job: nothing new is sent, requests in flight
            # finish and their vectors are kept (they are paid for).
            if not errors:
                stop_sending()
            errors.append(error)

        def stop_sending():
            # Requests not sent yet see it and end at once, sending nothing (they are
            # not cancelled: Future.cancel() takes the future's lock in this thread).
            stop.set()

        def submit(requests, offset=0, bounded=False):
            for request in requests:
                number = next(numbers)
                pool.submit(
                    _answering,
                    answers,
                    ended,
                    number,
                    self._run,
                    request + offset,
                    piece_texts,
                    piece_tokens,
                    limiter,
                    stop,
                    meter,
                    bounded,
                )
                untaken.add(number)

        def wait_for_answers():
            """The numbers of requests that ended since last asked, at least one."""
            while True:
                interrupts.check()
                try:
                    answered = [ended.get(timeout=CHECK_SECONDS)]
                    break
                except queue.Empty:
                    pass
            while True:
                try:
                    answered.append(ended.get_nowait())
                except queue.Empty:
                    return answered

        def take(answered):
            for number in answered:
                untaken.discard(number)  # never taken twice, whatever happens next
                try:
                    outcomes = answers[number]
                    if isinstance(outcomes, BaseException):
                        raise outcomes
                    for outcome in outcomes:
                        if outcome.refused:
                            # Rows that cannot be normalised: named when the job ends;
                            # they stop it only if most rows are.
                            systemic = assembler.refuse(outcome.pieces, outcome.refused)
                            if systemic is not None:
                                fail(systemic)
                        elif outcome.error is None:
                            assembler.add(outcome.pieces, outcome.vectors)
                        else:
                            fail(outcome.error)
                # A bug, a failing callback or a vector that cannot be normalised:
                # stop cleanly (the requests not sent yet then end at once).
                except Exception as error:
                    fail(error)
            # One hand-over per wake-up: a slow store (an fsync per call) then stores
            # more per call instead of falling behind the answers, which a crash would
            # lose. A store that fails stops the job like an API error, rather than
            # letting every queued request be sent and thrown away.
            try:
                bar.update(assembler.flush())
            except Exception as error:
                fail(error)

        pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="skembed")
        numbers = itertools.count()  # each request's number, in order
        untaken = set()  # numbers of requests whose outcomes are not in the assembler yet
        with (
            DeferredInterrupts() as interrupts,
            progress_bar(len(texts), self.progress, desc="Embedding", leave=False) as bar,
        ):
            try:
                submit(
                    self._plan(piece_tokens, limiter, 1 if probing else self.max_concurrency),
                    bounded=probe_bounds is not None,
                )
                if probing:
                    # Counted while the probe is out; then sized and paced by its answer.
                    more_texts, more_tokens, more_owners = self._pieces_after(texts, n_head)
                    if probe_bounds is not None:
                        piece_tokens = count_tokens(piece_texts, self.info.encoding)
                    n_probed = len(piece_texts)
                    piece_texts = piece_texts + more_texts
                    piece_tokens = np.concatenate([piece_tokens, more_tokens])
                    owners = np.concatenate([owners, more_owners])
                assembler = _Assembler(
                    len(texts), owners, piece_tokens, None if on_result is None else deliver
                )
                if probing:
                    while untaken:  # the probe's requests, the only ones sent yet
                        take(wait_for_answers())
                    if not stop.is_set():
                        rest = self._plan(more_tokens, limiter, self.max_concurrency)
                        submit(rest, offset=n_probed)
                while untaken:
                    take(wait_for_answers())
            except BaseException:
                # Ctrl-C (or any exception of this thread): nothing new is sent, and what
                # the requests already in flight bring is still cached (it is paid for),
                # for as long as they may take (each ends within `timeout`); then the
                # exception goes on. A second Ctrl-C ends the wait.
                stop_sending()
                self._drain(untaken, answers, ended, interrupts)
                if on_result is not None:
                    # A snapshot: a request still running past the drain may yet end.
                    paid = list(answers.values())
                    _hand_on_paid(paid, len(texts), owners, piece_tokens, delivered, on_result)
                raise
            finally:
                # Never waits: whatever is left ended above, or has not started (the
                # drain ran out of time) and is cancelled here.
                pool.shutdown(wait=False, cancel_futures=True)
        if not errors and assembler.refused:
            errors.append(assembler.refused_error())  # once everything else is handed on
        if errors:
            error = errors[0]
            if not isinstance(error, EmbeddingAPIError):
                raise error
            rows = np.unique(owners[list(error.rows)]) if error.rows else ()
            raise error.with_rows(rows, error.message)
        return assembler.result()


def _answering(answers, ended, number, function, *args):
    """Run ``function(*args)`` as request ``number``: its outcomes (or the exception it
    raised) into ``answers[number]``, then ``number`` into the queue ``ended``."""
    try:
        outcome = function(*args)
    except BaseException as error:  # handed to the main thread, which raises it
        outcome = error
    answers[number] = outcome
    ended.put(number)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
