"""Pacing under an account's limits: the probe that learns them, requests sized to them.

A job whose account's limits are not known yet sends its first texts alone, and plans
and paces the rest by the answer's ``x-ratelimit-*`` headers (``OpenAIBackend``'s
``_probe_size`` and ``_plan``; ``RateLimiter``'s first ``learn`` and headroom). The
promises, checked against the fake server's own accounting:

- no first wave of 429s, and no request larger than the account's burst allows;
- every vector is its own text's, each text paid once;
- a probe that fails stops the job before anything else is sent;
- a probe sent before its texts are counted (on their bytes, a bound of their tokens)
  is charged its exact tokens, whatever became of its attempts.
"""

from __future__ import annotations

import numpy as np
import pytest

from skembed._tokens import count_tokens
from skembed.backends import EmbeddingAPIError, InputTooLongError
from skembed.backends._base import RequestMeter
from skembed.backends._openai import PROBE_MAX_BYTES, PROBE_MAX_INPUTS, REQUEST_SHARE_OF_BURST
from skembed.backends._rate_limit import HEADROOM_SECONDS, RateLimiter
from tests._backends import openai_backend
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"


def expected(texts):
    return np.stack([expected_vector(MODEL, t, None) for t in texts])


def _texts(rng, n):
    words = [f"w{i}" for i in range(5_000)]
    return [f"{i} " + " ".join(rng.choice(words, int(rng.integers(3, 60)))) for i in range(int(n))]


@pytest.mark.parametrize("seed", range(4))
def test_a_job_under_a_small_burst_is_paced_from_its_first_wave(fake_server, openai_embedder, seed):
    rng = np.random.default_rng(seed)
    texts = _texts(rng, rng.integers(300, 900))
    total = int(count_tokens(texts).sum())
    window = float(rng.uniform(0.3, 1.0))
    tpm = int(total / 1.5 * 60)  # ~1.5 s of the account's budget in all
    burst = tpm * window / 60
    fake_server.configure(tpm=tpm, burst_seconds=window)
    concurrency = int(rng.integers(2, 17))
    X = openai_embedder(max_concurrency=concurrency).transform(texts)
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    stats = fake_server.stats()
    assert stats["times_embedded_max"] == 1
    # Blind, the first wave was `concurrency` requests of the whole job's share each, a
    # 429 for nearly every one (and "too large" for those over the burst). Learnt first,
    # no request asks for more than its share of the burst, and the pace holds.
    largest = stats["max_tokens_per_request_sent"]
    assert largest <= burst
    assert largest <= max(burst * REQUEST_SHARE_OF_BURST, PROBE_MAX_BYTES)  # or the probe
    assert stats["requests_by_status"].get("429", 0) <= 2, (seed, stats["requests_by_status"])


def test_the_rest_of_a_job_waits_for_its_probe(fake_server, openai_embedder):
    # The probe fails for good: nothing else may have been sent.
    rng = np.random.default_rng(7)
    texts = _texts(rng, 400)
    fake_server.configure(faults=[{"kind": "500"}])
    with pytest.raises(EmbeddingAPIError, match="HTTP 500") as info:
        openai_embedder(max_retries=0, max_concurrency=8).transform(texts)
    stats = fake_server.stats(texts=False)
    assert stats["requests"] == 1
    probed = list(info.value.rows)
    assert probed == list(range(len(probed)))  # the leading texts
    assert 1 <= len(probed) <= PROBE_MAX_INPUTS
    size = sum(len(texts[i].encode()) for i in probed)
    assert size <= PROBE_MAX_BYTES or len(probed) == 1
    # And the next leading text would have taken it over one of the probe's limits.
    if len(probed) < PROBE_MAX_INPUTS:
        assert size + len(texts[len(probed)].encode()) > PROBE_MAX_BYTES


@pytest.mark.parametrize("n_texts", [1, 2 * PROBE_MAX_INPUTS - 1])
def test_a_small_job_is_not_probed(fake_server, openai_embedder, n_texts):
    # Planned as one request: sent as one, with no first wave to protect.
    texts = [f"small job text {i}" for i in range(n_texts)]
    fake_server.configure(faults=[{"kind": "500"}])
    with pytest.raises(EmbeddingAPIError, match="HTTP 500") as info:
        openai_embedder(max_retries=0).transform(texts)
    assert list(info.value.rows) == list(range(n_texts))
    assert fake_server.stats(texts=False)["requests"] == 1


def test_a_long_text_is_refused_before_the_probe_is_sent(fake_server, openai_embedder):
    texts = [f"text {i}" for i in range(100)]
    texts[57] = "word " * 9000
    with pytest.raises(InputTooLongError, match="8192 tokens") as info:
        openai_embedder().transform(texts)
    assert info.value.rows == (57,)
    assert fake_server.stats(texts=False)["requests"] == 0


# -- a probe sent before its texts are counted ---------------------------------------

# Characters of every kind a user's text holds: a token is at least one byte of each.
_ALPHABETS = [
    [chr(c) for c in range(0x61, 0x7B)],  # Latin
    [chr(c) for c in range(0x4E00, 0x4E00 + 400)],  # CJK ideographs
    [chr(c) for c in range(0x3041, 0x3097)],  # hiragana
    [chr(c) for c in range(0xAC00, 0xAC00 + 300)],  # Hangul syllables
    [chr(c) for c in range(0x1F600, 0x1F650)],  # emoji
    ["e\u0301", "\u200d", "\t", "  ", "\n", "7", "<|endoftext|>", "\ufeff"],
]


def _mixed_texts(rng, n):
    texts = []
    for i in range(n):
        alphabet = _ALPHABETS[int(rng.integers(len(_ALPHABETS)))]
        n_chars = int(rng.integers(1, 200))
        texts.append(f"{i} " + "".join(rng.choice(alphabet, n_chars)))
    return texts


@pytest.mark.parametrize("seed", range(6))
def test_the_probe_is_bounded_by_its_bytes_and_refused_when_a_bound_could_mislead(seed):
    rng = np.random.default_rng(seed)
    backend = openai_backend()
    probe = _mixed_texts(rng, int(rng.integers(1, PROBE_MAX_INPUTS + 1)))
    bounds = backend._probe_bounds(probe, RequestMeter())
    assert (bounds >= count_tokens(probe)).all()
    # A job with a token limit reserves exact counts: a bound could stop a job that fits.
    assert backend._probe_bounds(probe, RequestMeter(limit=10**9)) is None
    # A text over the model's limit in bytes may need cutting: counted first.
    long_text = "\u4e00" * (backend.info.max_input_tokens // 3 + 1)
    assert backend._probe_bounds([*probe, long_text], RequestMeter()) is None


_PROBE_FAULTS = ["500", "503", "429", "drop"]


@pytest.mark.parametrize("seed", range(6))
def test_a_probe_sent_on_bounds_is_charged_its_exact_tokens(fake_server, seed):
    # Random texts of every script, the probe's attempts failing at random (answered
    # errors are not billed; a lost answer may be), with or without a tokens limit:
    # the meter charges exactly what the server counted, never the bounds it sent on.
    rng = np.random.default_rng(seed)
    texts = _mixed_texts(rng, int(rng.integers(2 * PROBE_MAX_INPUTS, 400)))
    faults = [
        {"kind": str(kind), "retry_after": 0}
        for kind in rng.choice(_PROBE_FAULTS, int(rng.integers(0, 4)))
    ]
    total = int(count_tokens(texts).sum())
    tpm = int(total * 60 / rng.uniform(0.5, 2.0)) if rng.random() < 0.5 else None
    fake_server.configure(faults=faults, tpm=tpm)
    backend = openai_backend(base_url=fake_server.base_url, progress=False, max_retries=4)
    probe = texts[: backend._probe_size(texts, RateLimiter())]
    assert backend._probe_bounds(probe, RequestMeter()) is not None  # sent on bounds
    meter = RequestMeter()
    X = backend.embed(texts, meter=meter)
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    stats = fake_server.stats()
    assert stats["times_embedded_max"] == 1
    n_lost = sum(fault["kind"] == "drop" for fault in faults)  # each a probe's attempt
    assert meter.tokens == stats["tokens"] == total
    assert meter.tokens_unsure == n_lost * int(count_tokens(probe).sum())
    assert meter.requests == stats["requests"]
    assert meter.committed == meter.tokens + meter.tokens_unsure  # nothing left in flight


def test_a_token_limit_of_exactly_the_job_is_not_stopped_by_the_probe(fake_server, openai_embedder):
    rng = np.random.default_rng(3)
    texts = _mixed_texts(rng, 200)
    total = int(count_tokens(texts).sum())
    X = openai_embedder(max_tokens=total).transform(texts)
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    assert fake_server.stats(texts=False)["tokens"] == total


# -- the limiter -----------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _headers(limit, remaining):
    return {"x-ratelimit-limit-tokens": str(limit), "x-ratelimit-remaining-tokens": str(remaining)}


def test_token_capacity_is_unknown_until_a_limit_is_told():
    limiter = RateLimiter(clock=_Clock())
    assert limiter.token_capacity() is None
    limiter.observe({}, n_tokens=10)  # a server that tells nothing
    assert limiter.token_capacity() is None
    limiter.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59"})
    assert limiter.token_capacity() == float("inf")  # requests limited, tokens not said
    limiter.observe(_headers(6000, 5900), n_tokens=100)
    assert limiter.token_capacity() == 6000


@pytest.mark.parametrize("seed", range(5))
def test_requests_sent_before_the_limits_were_known_count_against_what_is_left(seed):
    # Sent blind, the others may not be charged yet when the first answer tells what is
    # left: they are subtracted from it, as the Redis limiter does.
    rng = np.random.default_rng(seed)
    clock = _Clock()
    limiter = RateLimiter(clock=clock)
    sent = rng.integers(1, 1000, size=int(rng.integers(1, 8))).tolist()
    for n in sent:
        assert limiter.acquire(n)
    remaining = int(rng.integers(sum(sent), 50_000))
    limiter.observe(_headers(60_000, remaining), n_tokens=sent[0])
    assert limiter._tokens.level == pytest.approx(remaining + sent[0] - sum(sent))


@pytest.mark.parametrize("amount", [1, 500, 4_000])
def test_a_request_waits_for_its_tokens_and_a_margin_of_headroom(amount):
    clock = _Clock()
    limiter = RateLimiter(clock=clock)
    assert limiter.acquire(10_000)
    limiter.observe(_headers(60_000, 0), n_tokens=10_000)  # 1,000 tokens/s, bucket empty
    headroom = 1_000 * HEADROOM_SECONDS
    assert limiter._tokens.wait_for(amount) == pytest.approx((amount + headroom) / 1_000)
    clock.now += (amount + headroom) / 1_000
    limiter._tokens.refill(clock.now)
    assert limiter._tokens.wait_for(amount) == pytest.approx(0.0, abs=1e-9)
    # The margin never makes a request wait for more than a full bucket.
    assert limiter._tokens.wait_for(10**9) == pytest.approx((10_000 - amount - headroom) / 1_000)
