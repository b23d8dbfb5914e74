"""OpenAIEmbeddingTransformer: texts to OpenAI (or OpenAI-compatible) embeddings."""

from __future__ import annotations

from numbers import Integral, Real

from ._base import BaseEmbeddingTransformer
from ._math import normalize_rows
from ._sklearn_compat import Interval, StrOptions
from .backends._openai import OpenAIBackend
from .backends._openai_batch import OpenAIBatchBackend

__all__ = ["OpenAIEmbeddingTransformer"]


class OpenAIEmbeddingTransformer(BaseEmbeddingTransformer):
    """Embed texts with the OpenAI embeddings API, or any server that speaks it.

    A stateless transformer, like :class:`~sklearn.feature_extraction.text.HashingVectorizer`:
    ``fit`` only checks its input, and ``transform`` returns one unit-norm float32 row
    per text. Requests are planned within the API's limits (2048 inputs and 300,000
    tokens per request, 8192 tokens per input), several are in flight at once, the
    account's rate limits are respected, failures that retrying can fix are retried,
    and every vector is stored in a persistent cache as it arrives, so that each
    distinct text is paid for once across folds, clones, processes and runs.

    The API key is never a parameter: it is read from the environment variable
    ``api_key_env`` when a request must be made, so it cannot end up in
    ``get_params``, a pickle, a repr or a log.

    Read more in the :ref:`User Guide <openai_transformer>`.

    Parameters
    ----------
    model : str, default="text-embedding-3-small"
        Embedding model (for Azure: the deployment name). Models that skembed does not
        know (served by an OpenAI-compatible server) are accepted; give their
        ``dimensions`` so that the output width is known before the first request.
    dimensions : int, default=None
        Length of the returned vectors. ``None`` is the model's native size. For the
        text-embedding-3 models it is sent to the API, which shortens the vectors;
        ``text-embedding-ada-002`` refuses it. For unknown models it states the width
        the server returns, and is not sent.
    base_url : str, default=None
        Endpoint of an OpenAI-compatible server (``http://host:port/v1``), or of an
        Azure OpenAI resource when ``api_version`` is set. ``None`` means the SDK's
        default (OpenAI's API, or ``$OPENAI_BASE_URL``).
    api_key_env : str, default=None
        Name of the environment variable holding the API key; ``None`` means
        ``OPENAI_API_KEY`` (``AZURE_OPENAI_API_KEY`` for Azure).
    organization : str, default=None
        OpenAI organization id sent with each request.
    api_version : str, default=None
        Azure OpenAI API version (e.g. ``"2024-02-01"``). Setting it makes
        ``base_url`` an Azure endpoint.
    batch_size : int, default=512
        Most inputs per request (the API allows 2048). Requests also stay under
        300,000 tokens, and small jobs are spread over ``max_concurrency`` requests.
    max_concurrency : int, default=16
        Requests in flight at once. On 4,000 texts against a fake API at three
        latencies (100 ms + 5 ms, 150 ms + 20 ms and 400 ms + 40 ms per 1k tokens),
        16 took 1.3-1.7x less time than 8, and 32 another 1.0-1.4x less; under a
        tokens-per-minute limit, every value from 2 to 32 reached 0.94-0.97 of it
        with no 429 (``benchmarks/bench_throughput.py --concurrency``). Lower it
        when many jobs share one account.
    max_retries : int, default=8
        Retries of one request after a 429, a 5xx, a timeout or a dropped connection,
        with exponential back-off (or the server's ``retry-after``). Other errors are
        not retried.
    timeout : float, default=60.0
        Seconds one request may take in all (its whole answer, body included), and
        the longest any one wait lasts (for the rate limits, after a 429, between
        retries; never more than 60 s).
    long_input : {"error", "truncate", "chunk"}, default="error"
        What to do with a text over the model's input limit: raise naming its row,
        keep its first tokens, or embed consecutive chunks and average their vectors
        (weighted by their token counts, then re-normalised).
    encoding_format : {"base64", "float"}, default="base64"
        Wire format of the vectors. ``"base64"`` is faster; some compatible servers
        only speak ``"float"``.
    dimensions_from_full : bool, default=False
        Only with ``dimensions`` and a text-embedding-3 model, whose shortened vectors
        are the full vector truncated and re-normalised: request (and cache) the
        full-size vector, and shorten it here. Every ``dimensions`` then shares one
        cached vector per text, so a search over ``dimensions`` pays for each text
        once (tokens cost the same at any size). Refused for models where shortening
        is not truncation.
    max_tokens : int, default=None
        Most tokens one ``transform`` call may send. Checked before anything is sent
        (cached texts are free): a call over it raises
        :class:`~skembed.BudgetExceededError`. See :ref:`costs`.
    max_cost : float, default=None
        Most US dollars one ``transform`` call may spend, at
        ``usd_per_million_tokens``; checked like ``max_tokens``.
    usd_per_million_tokens : float, default=None
        Price used by :meth:`estimate_cost`, ``max_cost`` and the usage reports;
        ``None`` is the model's list price in skembed's registry (unknown for models
        it does not know).
    batch_api : bool, default=False
        Send the texts through OpenAI's Batch API instead: half the price, results
        within 24 hours. ``transform`` then uploads the requests, waits for the
        batches and caches each answer as it is read; an interrupted call, run again,
        picks up the batches already submitted instead of paying again. For large
        offline jobs; not with Azure. See :ref:`batch_api`.
    batch_poll_interval : float, default=30.0
        With ``batch_api=True``, seconds between two looks at the batches in flight.
    batch_max_enqueued_tokens : int, default=None
        With ``batch_api=True``, most tokens of this model in batches not yet ended,
        the limit of your organisation's tier (3,000,000 for text-embedding-3-large at
        the lowest): a larger job is submitted in waves, each after the previous one
        has ended. ``None`` learns it from the first batch that fails with
        ``token_limit_exceeded`` (then resubmitted, not counted as a failure).
    rate_limiter : str, default=None
        Where the pacing under the account's rate limits is kept. ``None``: in each
        ``transform`` call (enough for one process). ``"redis://host:port/db"``: in a
        Redis server shared by every worker, process or machine embedding with the
        same account, so that together they stay under its limits (see
        :ref:`shared_rate_limiter`); add ``?name=...`` to keep the workers of
        different API keys apart. The server's password goes in
        ``$SKEMBED_REDIS_PASSWORD``, never in the URL.
    model_revision : str, default=None
        Your name for the weights served under ``model`` (``"2024-06"``, an Ollama
        digest, a vLLM image tag), made part of the cache identity: change it when the
        server's model changes, and vectors of the old weights are never served
        again. See :ref:`model_revisions`.
    fingerprint : bool, default=False
        Recognise the weights instead: each process embeds one fixed probe text (one
        request of about 20 tokens, outside ``max_tokens``/``max_cost``) once per
        vector space, and the cache identity names the weights that vector belongs
        to, matched by cosine against the probe vectors the cache has met. For
        servers whose model can change behind its name without you knowing. Needs
        the server at every ``transform`` (and :meth:`estimate_cost`).
    on_invalid_text : {"error", "zero"}, default="error"
        Missing (``None``/``NaN``) or blank texts: raise naming the rows, or give them
        an all-zero row.
    cache : "default", path, URL, EmbeddingCache, RedisEmbeddingCache, False or None, \
            default="default"
        Where vectors are kept: ``"default"`` is the per-user persistent cache (see
        :ref:`caching`); a path or an :class:`~skembed.EmbeddingCache` picks another
        store; ``"redis://host:port/db"`` or a :class:`~skembed.RedisEmbeddingCache`
        is a store shared by a cluster (see :ref:`redis_cache`); ``None``/``False``
        turns caching off (duplicates within one call are still sent once).
    verbose : bool, default=False
        Show a progress bar while embedding.

    See Also
    --------
    LocalEmbeddingTransformer : The same contract with a bundled local model.
    ZeroShotEmbeddingClassifier : Classify texts by similarity to label descriptions.

    Notes
    -----
    Vectors are keyed in the cache by the endpoint (without credentials), the model
    (and ``model_revision`` or the ``fingerprint``), the dimensions and the exact
    text, so changing any of them never returns a vector computed under another.

    Examples
    --------
    >>> from skembed import OpenAIEmbeddingTransformer
    >>> embedder = OpenAIEmbeddingTransformer(dimensions=256)
    >>> embedder.get_feature_names_out()[:2].tolist()
    ['openaiembeddingtransformer0', 'openaiembeddingtransformer1']

    With a key in ``OPENAI_API_KEY`` (or a compatible server at ``base_url``)::

        X = embedder.fit_transform(["a cat", "a dog"])   # (2, 256) float32
    """

    _parameter_constraints: dict = {
        **BaseEmbeddingTransformer._parameter_constraints,
        "model": [str],
        "dimensions": [Interval(Integral, 1, None, closed="left"), None],
        "base_url": [str, None],
        "api_key_env": [str, None],
        "organization": [str, None],
        "api_version": [str, None],
        "batch_size": [Interval(Integral, 1, 2048, closed="both")],
        "max_concurrency": [Interval(Integral, 1, None, closed="left")],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "timeout": [Interval(Real, 0, None, closed="neither")],
        "long_input": [StrOptions({"error", "truncate", "chunk"})],
        "encoding_format": [StrOptions({"base64", "float"})],
        "dimensions_from_full": ["boolean"],
        "max_tokens": [Interval(Integral, 0, None, closed="left"), None],
        "max_cost": [Interval(Real, 0, None, closed="left"), None],
        "usd_per_million_tokens": [Interval(Real, 0, None, closed="left"), None],
        "batch_api": ["boolean"],
        "batch_poll_interval": [Interval(Real, 0, None, closed="left")],
        "batch_max_enqueued_tokens": [Interval(Integral, 1, None, closed="left"), None],
        "rate_limiter": [str, None],
        "model_revision": [str, None],
        "fingerprint": ["boolean"],
    }
    _backend_params = (
        "model",
        "dimensions",
        "dimensions_from_full",
        "base_url",
        "api_key_env",
        "organization",
        "api_version",
        "batch_size",
        "max_concurrency",
        "max_retries",
        "timeout",
        "long_input",
        "encoding_format",
        "usd_per_million_tokens",
        "rate_limiter",
        "model_revision",
        "fingerprint",
    )

    def __init__(
        self,
        *,
        model="text-embedding-3-small",
        dimensions=None,
        base_url=None,
        api_key_env=None,
        organization=None,
        api_version=None,
        batch_size=512,
        max_concurrency=16,
        max_retries=8,
        timeout=60.0,
        long_input="error",
        encoding_format="base64",
        dimensions_from_full=False,
        max_tokens=None,
        max_cost=None,
        usd_per_million_tokens=None,
        batch_api=False,
        batch_poll_interval=30.0,
        batch_max_enqueued_tokens=None,
        rate_limiter=None,
        model_revision=None,
        fingerprint=False,
        on_invalid_text="error",
        cache="default",
        verbose=False,
    ):
        self.model = model
        self.dimensions = dimensions
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.organization = organization
        self.api_version = api_version
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.long_input = long_input
        self.encoding_format = encoding_format
        self.dimensions_from_full = dimensions_from_full
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.usd_per_million_tokens = usd_per_million_tokens
        self.batch_api = batch_api
        self.batch_poll_interval = batch_poll_interval
        self.batch_max_enqueued_tokens = batch_max_enqueued_tokens
        self.rate_limiter = rate_limiter
        self.model_revision = model_revision
        self.fingerprint = fingerprint
        self.on_invalid_text = on_invalid_text
        self.cache = cache
        self.verbose = verbose

    def _make_backend(self):
        if self.batch_api:
            return OpenAIBatchBackend(
                **self._backend_kwargs(),
                poll_interval=self.batch_poll_interval,
                max_enqueued_tokens=self.batch_max_enqueued_tokens,
            )
        return OpenAIBackend(**self._backend_kwargs())

    def _backend_for(self, cache):
        backend = self._backend()
        backend.resolve_fingerprint(cache)
        return backend

    def _spending_limits(self):
        return {"max_tokens": self.max_tokens, "max_cost": self.max_cost}

    def estimate_cost(self, X):
        """Count the tokens ``transform(X)`` would send, and their price; send nothing.

        Only distinct texts that the cache does not hold count, after the
        ``long_input`` policy (truncated or chunked exactly as they would be sent),
        so the count equals what the API bills when every request succeeds. No API
        key is needed. ``X`` is checked as ``transform`` checks it.

        Parameters
        ----------
        X : list, 1-D array, Series or single-column DataFrame of str
            Texts.

        Returns
        -------
        CostEstimate
            With ``n_texts``, ``n_unique``, ``n_cached``, ``n_tokens`` and ``usd``
            (``None`` when the model's price is unknown).

        Examples
        --------
        >>> from skembed import OpenAIEmbeddingTransformer
        >>> embedder = OpenAIEmbeddingTransformer(cache=None)
        >>> estimate = embedder.estimate_cost(["tiktoken is great!", "a", "a"])
        >>> estimate.n_unique, estimate.n_tokens
        (2, 7)
        >>> print(estimate)
        text-embedding-3-small: 3 texts, 2 distinct, 0 cached; 2 to send, 7 tokens, $0.00000014
        """
        return self._estimate_cost(X)

    def _postprocess(self, vectors, backend):
        if backend.shorten_to is None:
            return vectors
        # dimensions_from_full: what the API does for text-embedding-3, on the cached
        # full vector: keep the first coordinates, re-normalise.
        return normalize_rows(vectors[:, : backend.shorten_to], zero_rows="keep")

    def _output_dim(self):
        backend = self._backend()
        return backend.shorten_to or backend.n_dimensions
