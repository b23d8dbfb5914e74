"""The Batch API in waves, under the model's limit of enqueued tokens.

The fake server enforces ``max_enqueued_tokens`` as the real service does: a batch that
would put more of the model's tokens in unfinished batches fails validation with
``token_limit_exceeded``. A job larger than the limit is then submitted in waves, each
after the previous one has ended, with the limit given (``batch_max_enqueued_tokens``)
or learnt from the first such failure.

The promise, as a property over random sizes, text lengths and limits: every vector is
its own text's, each text is paid once, and with a given limit the server never holds
more than it.
"""

import numpy as np
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._tokens import count_tokens
from skembed.backends import EmbeddingAPIError, _openai_batch
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIM = 16
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
]


@pytest.fixture(autouse=True)
def new_process():
    """No limit learnt yet, as in a new process."""
    _openai_batch._learnt_limits.clear()
    yield
    _openai_batch._learnt_limits.clear()


@pytest.fixture
def server(fake_server):
    fake_server.configure_batches(completion_seconds=0.1)
    return fake_server


def make(server, cache, **params):
    defaults = {"batch_poll_interval": 0.02, "batch_size": 4}
    return OpenAIEmbeddingTransformer(
        model=MODEL,
        dimensions=DIM,
        base_url=server.base_url,
        batch_api=True,
        cache=cache,
        **{**defaults, **params},
    )


def random_texts(rng, n, tag):
    return [f"{tag} {i} " + " ".join(rng.choice(WORDS, int(rng.integers(1, 30)))) for i in range(n)]


def line_tokens(texts, size=4):
    """Tokens of each request line as the job packs them (``batch_size`` inputs)."""
    tokens = count_tokens(texts, "cl100k_base")
    return [int(sum(tokens[i : i + size])) for i in range(0, len(texts), size)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("given", [True, False], ids=["given", "learnt"])
def test_a_job_over_the_limit_runs_in_waves_and_pays_each_text_once(server, tmp_path, seed, given):
    rng = np.random.default_rng(seed)
    texts = random_texts(rng, int(rng.integers(20, 120)), f"seed {seed}")
    total = sum(line_tokens(texts))
    # At least the largest line (the job's lines can be packed in any order, the
    # largest must fit), at most half of the job: two waves or more.
    limit = int(rng.integers(max(max(line_tokens(texts)) * 2, 10), max(total // 2, 11) + 1))
    server.configure_batches(max_enqueued_tokens=limit)
    embedder = make(
        server,
        EmbeddingCache(tmp_path / "cache"),
        batch_max_enqueued_tokens=limit if given else None,
    )
    vectors = embedder.transform(texts)
    want = np.stack([expected_vector(MODEL, t, DIM) for t in texts])
    np.testing.assert_allclose(vectors, want, atol=1e-6)
    stats = server.stats()
    assert stats["times_embedded_max"] == 1
    assert set(stats["text_counts"]) == set(texts)
    assert stats["batch_peak_enqueued_tokens"] <= limit
    assert stats["batches_created"] >= 2
    if given:
        assert stats["batch_token_limit_failures"] == 0
    else:
        # Learnt from the first failure (the message states the limit), then kept.
        assert stats["batch_token_limit_failures"] >= 1
        assert _openai_batch._learnt_limits and min(_openai_batch._learnt_limits.values()) == limit


def test_a_learnt_limit_serves_every_later_job_of_the_process(server, tmp_path):
    rng = np.random.default_rng(0)
    first, second = random_texts(rng, 60, "first"), random_texts(rng, 60, "second")
    limit = sum(line_tokens(first)) // 3
    server.configure_batches(max_enqueued_tokens=limit)
    cache = EmbeddingCache(tmp_path / "cache")
    make(server, cache).transform(first)
    failures = server.stats()["batch_token_limit_failures"]
    assert failures >= 1
    make(server, cache).transform(second)
    assert server.stats()["batch_token_limit_failures"] == failures
    assert server.stats()["times_embedded_max"] == 1


def test_a_queue_that_never_frees_ends_in_an_error_and_keeps_what_was_answered(server, tmp_path):
    # Every line is over the limit: no wave can go through. The error names the API's
    # message after a bounded number of rounds; nothing else was embedded.
    texts = [" ".join(WORDS * 3) + f" {i}" for i in range(6)]
    server.configure_batches(max_enqueued_tokens=5)
    embedder = make(server, EmbeddingCache(tmp_path / "cache"), batch_size=1)
    with pytest.raises(EmbeddingAPIError, match="Enqueued token limit") as info:
        embedder.transform(texts)
    assert sorted(info.value.rows) == list(range(6))
    stats = server.stats()
    assert stats["batch_inputs"] == 0
    assert stats["batch_token_limit_failures"] <= 6 * 4  # bounded: max_resubmits rounds


def test_the_fake_server_refuses_a_bad_limit(server):
    with pytest.raises(ValueError, match="max_enqueued_tokens"):
        server.configure_batches(max_enqueued_tokens=0)
