"""Cache identity: everything a vector depends on, and nothing that decides the outcome
of a call left to what happens to be cached (design §8).

- The endpoint is resolved as the SDK resolves it, environment variables included
  (``OPENAI_BASE_URL``; for Azure ``AZURE_OPENAI_ENDPOINT``), and the client is handed
  the very endpoint the identity names.
- Every constructor parameter of both transformers either changes ``cache_namespace``
  or is listed here with the reason its vectors are provably the same, and checked.
- ``long_input``: ``"error"`` and ``"truncate"`` share vectors (a text within the limit
  gets the same one under both), so an ``"error"`` call refuses a long text before the
  cache is read, whatever a ``"truncate"`` run left there.
"""

import itertools

import numpy as np
import pytest
from sklearn.base import clone

from skembed import (
    EmbeddingCache,
    InputTooLongError,
    LocalEmbeddingTransformer,
    OpenAIEmbeddingTransformer,
)
from skembed.backends._endpoint import endpoint_identity, resolve_endpoint
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIM = 32
AZURE = "2024-02-01"


def namespace(estimator):
    backend = estimator._make_backend()
    if getattr(backend, "fingerprint", False):
        # Known once the model is probed (tests/test_model_revision.py probes it); any
        # probe's revision shows whether the identity carries one.
        backend._fingerprint_id = "0123456789abcdef"
    return backend.cache_namespace


# -- the endpoint ------------------------------------------------------------------------


def _url_variants(rng, scheme, host, port, path):
    """Spellings of one endpoint that the SDK sends to the same server."""
    for _ in range(4):
        shown_host = "".join(c.upper() if rng.random() < 0.5 else c for c in host)
        shown_scheme = scheme.upper() if rng.random() < 0.5 else scheme
        user = rng.choice(["", "user@", "user:secret@"])
        netloc = f"{user}{shown_host}" + (f":{port}" if port is not None else "")
        tail = rng.choice(["", "/", "?key=1", "/?api-version=x", "#part"])
        yield f"{shown_scheme}://{netloc}{path}{tail}"


HOSTS = ["example.org", "api.example.org", "127.0.0.1", "[::1]", "[::1:1]", "[2001:db8::1]"]


@pytest.mark.parametrize("seed", range(5))
def test_endpoint_identity_names_the_server_and_nothing_else(seed):
    rng = np.random.default_rng(seed)
    # Two that lose their brackets would collide ("::1:1" both).
    endpoints = {("http", "[::1]", 1, "/v1"), ("http", "[::1:1]", None, "/v1")}
    while len(endpoints) < 12:
        endpoints.add(
            (
                str(rng.choice(["http", "https"])),
                str(rng.choice(HOSTS)),
                rng.choice([None, 1, 8080, 443]),
                str(rng.choice(["", "/v1", "/v1/openai", "/V1"])),
            )
        )
    seen = {}
    for endpoint in endpoints:
        identities = {endpoint_identity(url) for url in _url_variants(rng, *endpoint)}
        # Case of scheme and host, credentials, query, fragment, trailing slash: the
        # same server, so one identity, which never shows a credential.
        assert len(identities) == 1, (endpoint, identities)
        (identity,) = identities
        assert "secret" not in identity and "user" not in identity and "?" not in identity
        seen.setdefault(identity, set()).add(endpoint)
    # Distinct servers (host, port, path) never share one; [::1]:1 is not [::1:1].
    assert all(len(group) == 1 for group in seen.values()), seen


def test_ipv6_endpoints_keep_their_brackets():
    assert endpoint_identity("http://[::1]:1/v1") == "http://[::1]:1/v1"
    assert endpoint_identity("http://[::1:1]/v1") == "http://[::1:1]/v1"
    assert endpoint_identity("http://[::1]:1/v1") != endpoint_identity("http://[::1:1]/v1")
    assert endpoint_identity("http://[::1]:1/v1", AZURE).endswith("@azure-2024-02-01")


def test_plain_openai_reads_openai_base_url_like_the_sdk(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert endpoint_identity(None) == "openai"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://Proxy.example:8000/v1/")
    assert endpoint_identity(None) == endpoint_identity("http://proxy.example:8000/v1")
    # Azure never reads it (the SDK builds Azure's URL from azure_endpoint only).
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    assert "proxy" not in endpoint_identity(None, AZURE)
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    with pytest.raises(ValueError, match="OPENAI_BASE_URL is empty"):
        endpoint_identity(None)


def test_openai_base_url_set_after_the_identity_was_fixed_is_refused(fake_server, monkeypatch):
    # Built with OpenAI's own API as its identity, the backend must never send to (and
    # cache the answers of) a server named later in the environment.
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    embedder = OpenAIEmbeddingTransformer(cache=None)
    backend = embedder._backend()
    assert backend.cache_namespace.startswith("openai|openai|")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.base_url)
    with pytest.raises(ValueError, match="OPENAI_BASE_URL was set after"):
        embedder.transform(["a text"])
    assert fake_server.stats()["requests"] == 0


@pytest.mark.parametrize("seed", range(3))
def test_azure_identity_is_the_resource_from_wherever_it_comes(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    resources = [f"https://res-{i}.openai.azure.com" for i in rng.permutation(5)]
    monkeypatch.setenv("OPENAI_BASE_URL", "https://proxy.example/v1")
    plain = namespace(OpenAIEmbeddingTransformer(model="deployment", base_url=resources[0]))
    found = {}
    for resource in resources:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", resource + str(rng.choice(["", "/"])))
        from_env = namespace(OpenAIEmbeddingTransformer(model="deployment", api_version=AZURE))
        given = OpenAIEmbeddingTransformer(model="deployment", api_version=AZURE, base_url=resource)
        # The environment and the parameter name the same resource the same way...
        assert from_env == namespace(given)
        assert resource.split("//")[1] in from_env
        found[from_env] = resource
        # ... and never plain OpenAI's space, nor (through it) another resource's.
        assert from_env != plain
        assert from_env != namespace(OpenAIEmbeddingTransformer(model="deployment"))
    assert len(found) == len(resources)


def test_azure_without_an_endpoint_fails_before_any_request(monkeypatch, fake_server):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", fake_server.api_key)
    embedder = OpenAIEmbeddingTransformer(api_version=AZURE, cache=None)
    for call in (embedder.fit, embedder.transform, embedder.estimate_cost):
        with pytest.raises(ValueError, match="AZURE_OPENAI_ENDPOINT"):
            call(["x"])
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "  ")
    with pytest.raises(ValueError, match="AZURE_OPENAI_ENDPOINT is empty"):
        embedder.transform(["x"])
    assert fake_server.stats()["requests"] == 0


def test_azure_endpoint_from_the_environment_reaches_that_resource(
    monkeypatch, fake_server, tmp_path
):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", fake_server.api_key)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake_server.url)
    cache = EmbeddingCache(tmp_path / "cache")
    embedder = OpenAIEmbeddingTransformer(
        model=MODEL, dimensions=DIM, api_version=AZURE, cache=cache
    )
    embedder.fit(["warm"])
    backend = embedder._backend()
    # The environment changes after the backend was built: its client still sends to
    # the endpoint its identity names, never to the new one.
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9")
    X = embedder.transform(["azure one", "azure two"])
    want = np.stack([expected_vector(MODEL, t, DIM) for t in ["azure one", "azure two"]])
    np.testing.assert_allclose(X, want, atol=1e-6)
    assert fake_server.stats()["inputs"] == 2
    # The same resource given as base_url shares those vectors; the new environment
    # names another resource, which does not.
    same = OpenAIEmbeddingTransformer(
        model=MODEL, dimensions=DIM, api_version=AZURE, base_url=fake_server.url, cache=cache
    )
    assert namespace(same) == backend.cache_namespace
    np.testing.assert_allclose(same.transform(["azure one", "azure two"]), want, atol=1e-6)
    assert fake_server.stats()["inputs"] == 2  # served by the cache
    assert namespace(clone(embedder)) != backend.cache_namespace
    cache.close()


# -- every parameter: it changes the identity, or provably not the vectors ----------------

#: (parameter, flipped value, why the vectors are the same) -- no reason: the identity
#: must change. Every constructor parameter appears at least once.
OPENAI_FLIPS = [
    ("model", "text-embedding-3-large", None),
    ("dimensions", 64, None),
    ("base_url", "http://127.0.0.1:9/other", None),
    ("api_version", AZURE, None),
    ("dimensions_from_full", True, None),  # caches the full vector: another width
    ("long_input", "chunk", None),
    (
        "long_input",
        "truncate",
        "a text within the limit is sent as it is under both; a long one is refused under "
        "'error' before the cache is read (check_inputs)",
    ),
    ("api_key_env", "OTHER_OPENAI_KEY", "which key pays, not what the model returns"),
    ("organization", "org-other", "billing, not the model"),
    ("batch_size", 3, "how texts are grouped into requests"),
    ("max_concurrency", 1, "how many requests are in flight"),
    ("max_retries", 0, "how often a failed request is tried again"),
    ("timeout", 30.0, "how long an answer is waited for"),
    (
        "encoding_format",
        "float",
        "the same float32 values, as JSON numbers instead of bytes, normalised alike",
    ),
    ("max_tokens", 10**9, "a spending limit"),
    ("max_cost", 1000.0, "a spending limit"),
    ("usd_per_million_tokens", 1.0, "the price reports use"),
    ("batch_api", True, "the same request body, run by the Batch API on the same model"),
    ("batch_poll_interval", 0.05, "how often the Batch API is asked"),
    ("batch_max_enqueued_tokens", 10**6, "how many batches are in flight at once"),
    ("rate_limiter", "redis://127.0.0.1:1/0", "pacing"),
    ("model_revision", "2024-06", None),  # the user's name for the weights
    ("fingerprint", True, None),  # the weights, recognised by a probe vector
    ("on_invalid_text", "zero", "blank rows are never embedded nor cached"),
    ("cache", "a path", "where vectors are kept"),
    ("verbose", True, "a progress bar"),
]
LOCAL_FLIPS = [
    ("model", "use-multilingual-v3", None),
    ("max_length", 128, None),
    ("long_input", "chunk", None),
    (
        "long_input",
        "error",
        "a text within max_length is embedded whole under both; a long one is refused under "
        "'error' before the cache is read (check_inputs)",
    ),
    ("batch_size", 3, "padding is masked: the same vector up to float32 rounding"),
    ("n_threads", 1, "the same computation on fewer threads"),
    ("on_invalid_text", "zero", "blank rows are never embedded nor cached"),
    ("cache", "a path", "where vectors are kept"),
    ("verbose", True, "a progress bar"),
]


@pytest.mark.parametrize(
    ("base", "flips"),
    [
        (
            OpenAIEmbeddingTransformer(dimensions=DIM, base_url="http://127.0.0.1:9/v1"),
            OPENAI_FLIPS,
        ),
        (LocalEmbeddingTransformer(), LOCAL_FLIPS),
    ],
    ids=["openai", "local"],
)
def test_every_parameter_changes_the_identity_or_is_listed_with_its_reason(base, flips):
    assert {name for name, _, _ in flips} == set(base.get_params())
    before = namespace(base)
    for name, value, same_because in flips:
        flipped = clone(base).set_params(**{name: value})
        assert getattr(base, name) != value, name  # a real flip
        if same_because is None:
            assert namespace(flipped) != before, name
        else:
            assert namespace(flipped) == before, (name, same_because)


SAME_TEXTS = ["tiktoken is great!", "a cat on a mat", "", "  ", "Stocks fell sharply."]


def _transform(estimator):
    return estimator.set_params(on_invalid_text="zero").transform(SAME_TEXTS)


def test_openai_parameters_listed_as_same_give_the_same_vectors(
    fake_server, monkeypatch, tmp_path, redis_server
):
    # Each parameter listed as not changing the identity is flipped on a live call:
    # the vectors must be the ones the base gives (blank rows ask for "zero").
    fake_server.configure_batches(completion_seconds=0.05)
    monkeypatch.setenv("OTHER_OPENAI_KEY", fake_server.api_key)
    base = OpenAIEmbeddingTransformer(dimensions=DIM, base_url=fake_server.base_url, cache=None)
    want = _transform(clone(base))
    values = {"cache": str(tmp_path / "cache"), "rate_limiter": redis_server.url()}
    for name, value, same_because in OPENAI_FLIPS:
        if same_because is None or name in ("long_input", "on_invalid_text"):
            continue  # long_input: test_long_input_policy_never_depends_on_the_cache
        flipped = clone(base).set_params(**{name: values.get(name, value)})
        if name == "batch_api":
            flipped.set_params(cache=str(tmp_path / "batch"), batch_poll_interval=0.02)
        np.testing.assert_allclose(_transform(flipped), want, atol=1e-6, err_msg=name)


def test_local_parameters_listed_as_same_give_the_same_vectors(tmp_path):
    base = LocalEmbeddingTransformer(cache=None)
    want = _transform(clone(base))
    for name, value, same_because in LOCAL_FLIPS:
        if same_because is None or name in ("long_input", "on_invalid_text"):
            continue
        value = str(tmp_path / "cache") if name == "cache" else value
        flipped = clone(base).set_params(**{name: value})
        np.testing.assert_allclose(_transform(flipped), want, atol=1e-5, err_msg=name)


# -- long_input: the outcome of a call never depends on the cache ------------------------


def _policy_texts(rng, long_text):
    n = int(rng.integers(2, 8))
    texts = [f"short {rng.integers(10**6)} {i}" for i in range(n)]
    n_long = int(rng.integers(1, 3))
    texts += [long_text(int(rng.integers(10**6)), i) for i in range(n_long)]
    return list(rng.permutation(texts)), n_long


def _check_policies(rng, make, long_text, count_sent=None):
    """Random runs of "truncate" and "error" (and cost estimates) on one shared cache."""
    texts, _ = _policy_texts(rng, long_text)
    texts = [str(t) for t in texts]
    long_rows = [i for i, t in enumerate(texts) if t.startswith("long")]
    short = [t for t in texts if not t.startswith("long")]
    truncated = None
    policies = ["truncate", "error", "error-short", "estimate"]
    # Each policy in a random order, a few more, and "error" after a "truncate" for sure.
    for policy in [*rng.permutation(policies), *rng.choice(policies, size=3), "error"]:
        if policy == "truncate":
            truncated = make("truncate").transform(texts)
        elif policy == "estimate" and hasattr(make("error"), "estimate_cost"):
            # A cost estimate refuses what transform refuses, cached or not.
            with pytest.raises(InputTooLongError) as caught:
                make("error").estimate_cost(texts)
            assert sorted(caught.value.rows) == long_rows
        elif policy == "error":
            sent = count_sent() if count_sent else None
            with pytest.raises(InputTooLongError) as caught:
                make("error").transform(texts)
            # Every long row is named, whether a "truncate" run cached it or not...
            assert sorted(caught.value.rows) == long_rows
            # ... and nothing was sent for a call that had to fail.
            assert count_sent is None or count_sent() == sent
        elif policy == "error-short":
            # Within the limit, "error" gives "truncate"'s vectors (shared, not paid again).
            X = make("error").transform(short)
            if truncated is not None:
                want = truncated[[i for i, t in enumerate(texts) if not t.startswith("long")]]
                np.testing.assert_allclose(X, want, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_long_input_policy_never_depends_on_the_cache_openai(fake_server, tmp_path, seed):
    cache = EmbeddingCache(tmp_path / "cache")

    def make(policy):
        return OpenAIEmbeddingTransformer(
            base_url=fake_server.base_url, dimensions=DIM, long_input=policy, cache=cache
        )

    def long_text(tag, i):
        return f"long {tag} {i} " + "word " * 8300  # over 8192 tokens

    _check_policies(
        np.random.default_rng(seed), make, long_text, lambda: fake_server.stats()["inputs"]
    )
    texts = list(fake_server.stats()["text_counts"])
    assert all(count == 1 for count in fake_server.stats()["text_counts"].values()), texts
    cache.close()


@pytest.mark.parametrize("seed", range(2))
def test_long_input_policy_never_depends_on_the_cache_local(tmp_path, seed):
    cache = EmbeddingCache(tmp_path / "cache")

    def make(policy):
        return LocalEmbeddingTransformer(long_input=policy, max_length=32, cache=cache)

    def long_text(tag, i):
        return f"long {tag} {i} " + " ".join(itertools.repeat("word", 40))

    _check_policies(np.random.default_rng(seed), make, long_text)
    cache.close()


def test_check_inputs_counts_only_texts_that_could_be_long(monkeypatch):
    # A corpus of ordinary texts costs no tokenizing under "error".
    backend = OpenAIEmbeddingTransformer(long_input="error")._make_backend()
    calls = []
    monkeypatch.setattr(backend, "count_billed_tokens", lambda texts: calls.append(texts))
    backend.check_inputs(["short"] * 100 + ["é" * 3000])  # 6000 bytes: at most 6000 tokens
    assert calls == []
    backend.check_inputs(["short", "x" * 8193])
    assert calls == [["x" * 8193]]
    assert resolve_endpoint("http://h/v1") == "http://h/v1"
