"""The OpenAI transport against hostile keys, bodies, headers and URLs (issue 15, items
11-14): a key that cannot be a header fails at once and is never repeated; ``timeout``
bounds a whole answer; no header value parks a job beyond ``timeout`` and ``max_retries``;
a huge body is refused unread; a URL's credentials are refused and its query values
masked in the HTTP client's log.

Everything runs through the real SDK against the fake server (``tests/fake_openai``).
"""

import logging
import math
import os
import pickle
import threading
import time
import traceback

import numpy as np
import openai
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from skembed import OpenAIEmbeddingTransformer
from skembed.backends import EmbeddingAPIError
from skembed.backends._rate_limit import MAX_WAIT, RateLimiter, learnt_limits
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIM = 16
_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def expected(texts, model=MODEL):
    return np.stack([expected_vector(model, text, DIM) for text in texts])


# -- item 11: keys that cannot be sent ----------------------------------------------------

_HEX = "0123456789abcdef"
_NON_ASCII = st.characters(min_codepoint=0x80, exclude_categories=("Cs",))
_CONTROL = st.sampled_from([chr(c) for c in (*range(1, 32), 127)])
_BLANK = st.sampled_from([" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2028"])


@st.composite
def bad_keys(draw):
    """A plausible key with one character a header cannot carry, at a random place."""
    body = "sk-" + draw(st.text(_HEX, min_size=16, max_size=48))
    bad = draw(st.one_of(_NON_ASCII, _CONTROL, _BLANK))
    position = draw(st.sampled_from([0, len(body)]) | st.integers(0, len(body)))
    return body[:position] + bad + body[position:]


def _pieces(key):
    """Every substring of ``key`` of length 4 (a longer one contains one of these), but
    one character repeated ("0000"), which any traceback's numbers contain by chance."""
    return {key[i : i + 4] for i in range(len(key) - 3) if len(set(key[i : i + 4])) > 1}


def _chain(error):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _places(error):
    places = []
    for link in _chain(error):
        places += [str(link), repr(link), repr(vars(link)), repr(link.args)]
        places += traceback.format_exception(link)
    return places


def assert_key_nowhere(error, key, control=None):
    """No 4-character piece of ``key`` in ``error``'s texts or pickles.

    ``control``: the same error raised for another key of the same shape. A piece also
    found there is the error's own text, not the key: hex can spell "aceb" of "Traceback".
    """
    places = _places(error)
    boilerplate = "\n".join(_places(control)) if control is not None else ""
    blobs = [pickle.dumps(error), pickle.dumps(error, protocol=0)]
    for piece in _pieces(key):
        if piece in boilerplate:
            continue
        assert not any(piece in place for place in places), "a piece of the key in the error"
        encoded = piece.encode("utf-8", "surrogatepass")
        assert not any(encoded in blob for blob in blobs), "a piece of the key in a pickle"


@settings(max_examples=60, deadline=None, suppress_health_check=_FIXTURES)
@given(key=bad_keys(), route=st.sampled_from(["openai", "azure", "batch"]))
@example(key="sk-0123456789abcdef\n", route="openai")
@example(key="sk-0123456789abcdef\r\n", route="openai")
@example(key=" sk-0123456789abcdef", route="openai")
@example(key="sk-01234567\u201389abcdef", route="azure")
def test_a_key_that_cannot_be_a_header_fails_at_once_and_is_never_repeated(fake_server, key, route):
    error = _refused(fake_server, key, route)
    assert "nothing was sent" in str(error)
    assert error.__cause__ is None and error.__suppress_context__
    # The control key: the same shape, its hex spelled with letters no hex key has.
    control = _refused(fake_server, key.translate(_CONTROL_LETTERS), route)
    assert_key_nowhere(error, key, control)
    stats = fake_server.stats(texts=False)
    assert stats["requests"] == 0 and stats["auth_schemes"] == {}


_CONTROL_LETTERS = str.maketrans(_HEX, "ghijklmnopqrstuv")


def _refused(fake_server, key, route):
    """The error of a transform whose key cannot be a header (checked fast, nothing sent)."""
    variable = "AZURE_OPENAI_API_KEY" if route == "azure" else "OPENAI_API_KEY"
    params = {"cache": None, "dimensions": DIM, "base_url": fake_server.base_url}
    if route == "azure":
        params.update(base_url=fake_server.url, api_version="2024-02-01")
    saved = os.environ.get(variable)
    os.environ[variable] = key
    try:
        embedder = OpenAIEmbeddingTransformer(batch_api=route == "batch", **params)
        start = time.perf_counter()
        refused = f"The API key in the environment variable {variable}"
        with pytest.raises(EmbeddingAPIError, match=refused) as info:
            embedder.transform(["a text", "another text"])
        assert time.perf_counter() - start < 0.5  # no retry, no back-off
    finally:
        if saved is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved
    return info.value


# -- item 12: timeout is a deadline for the whole answer -----------------------------------


def _body_bytes(server, texts):
    """Length of the server's answer to ``texts`` (untrickled)."""
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    raw = client.embeddings.with_raw_response.create(
        model=MODEL, input=texts, dimensions=DIM, encoding_format="base64"
    )
    return len(raw.http_response.content)


@settings(max_examples=6, deadline=None, suppress_health_check=_FIXTURES)
@given(
    timeout=st.floats(0.2, 0.5),
    chunk=st.sampled_from([1, 4, 16, 64]),
    share_of_timeout=st.floats(0.01, 0.95),  # the pause before each chunk
    max_retries=st.integers(0, 1),
)
@example(timeout=0.5, chunk=64, share_of_timeout=0.9, max_retries=0)  # each read near timeout
@example(timeout=0.5, chunk=1, share_of_timeout=0.01, max_retries=0)  # the case
def test_timeout_bounds_the_whole_answer_of_a_trickling_server(
    fake_server, timeout, chunk, share_of_timeout, max_retries
):
    texts = ["a trickled text"]
    fake_server.reset()
    size = _body_bytes(fake_server, texts)
    pause = share_of_timeout * timeout
    fake_server.configure(trickle_seconds_per_chunk=pause, trickle_chunk_bytes=chunk)
    fake_server.reset_stats()
    takes = math.ceil(size / chunk) * pause  # what the server needs to send it all
    embedder = OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url,
        cache=None,
        dimensions=DIM,
        timeout=timeout,
        max_retries=max_retries,
    )
    start = time.perf_counter()
    try:
        X = embedder.transform(texts)
    except EmbeddingAPIError as error:
        X, failure = None, error
    elapsed = time.perf_counter() - start
    # Each attempt ends by its deadline (plus the socket's shutdown and scheduling), and
    # a retry first waits at most min(timeout, the first back-off).
    bound = (1 + max_retries) * timeout + max_retries * min(timeout, 0.5) + 0.25
    assert elapsed <= bound, (elapsed, bound, takes)
    if takes < 0.6 * timeout:  # well within: the answer is taken, and right
        assert X is not None
        np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    if takes > 1.3 * timeout:  # far beyond: every attempt ran out of time
        assert X is None
        assert f"no complete answer within timeout={timeout:g} s" in str(failure)
        assert fake_server.stats(texts=False)["requests"] == 1 + max_retries


# -- item 13: rate-limit headers are clamped, every wait is capped -------------------------

_HEADER_NAMES = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "retry-after",
    "retry-after-ms",
]
_ODD_NUMBERS = ["-1", "-100000", "0", "-0", "0.0001", "1e-300", "1", "2", "60", "1e9", "1e300"]
_NOT_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "abc", "", "1s", "6m0s", "0x10"]
_HOSTILE = st.one_of(
    st.sampled_from(_ODD_NUMBERS + _NOT_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**12), 10**12).map(str),
)
hostile_headers = st.dictionaries(st.sampled_from(_HEADER_NAMES), _HOSTILE, max_size=8)
_AZURE_UNKNOWN = {
    name: "-1" for name in _HEADER_NAMES if name.startswith("x-ratelimit-") and "reset" not in name
}


@settings(max_examples=8, deadline=None, suppress_health_check=_FIXTURES)
@given(headers=hostile_headers, n_429=st.integers(0, 4))
@example(headers=_AZURE_UNKNOWN, n_429=0)
@example(
    headers={"x-ratelimit-remaining-requests": "-100000", "x-ratelimit-limit-requests": "60"},
    n_429=0,
)
@example(
    headers={"x-ratelimit-limit-tokens": "0.0001", "x-ratelimit-remaining-tokens": "0"},
    n_429=0,
)
@example(
    headers={"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0"}, n_429=0
)
@example(headers={"retry-after": "1e9", "retry-after-ms": "1e12"}, n_429=3)
def test_no_header_value_holds_a_job_beyond_its_timeout_and_retries(fake_server, headers, n_429):
    timeout, max_retries, batch, threads = 0.3, 2, 4, 2
    texts = [f"paced text {i}" for i in range(12)]
    fake_server.reset()
    # The headers ride on every answer: the 200s the limiter learns from, and the 429s.
    fake_server.configure(extra_headers=headers, faults=[{"kind": "429"}] * n_429)
    embedder = OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url,
        cache=None,
        dimensions=DIM,
        timeout=timeout,
        max_retries=max_retries,
        batch_size=batch,
        max_concurrency=threads,
    )
    start = time.perf_counter()
    try:
        X = embedder.transform(texts)
    except EmbeddingAPIError as error:  # only 429s, more than one request's retries
        assert error.status_code == 429 and n_429 > max_retries
        assert "gave up after 2 retries" in str(error)
        X = None
    elapsed = time.perf_counter() - start
    # A request's attempts each take at most one wait for the limiter, one for a pause
    # or back-off, and the request itself, each bounded by the timeout: rounds of
    # requests, each within (1 + max_retries) of those.
    rounds = math.ceil(len(texts) / batch / threads)
    bound = rounds * (1 + max_retries) * 3 * timeout + 1.0
    assert elapsed <= bound, (elapsed, bound)
    if X is not None:
        np.testing.assert_allclose(X, expected(texts), atol=1e-6)


def test_azure_unknown_minus_one_headers_teach_nothing():
    assert learnt_limits(_AZURE_UNKNOWN, n_tokens=10) == {"tokens": None, "requests": None}
    limiter = RateLimiter()
    limiter.observe(_AZURE_UNKNOWN, n_tokens=10)
    assert limiter._tokens.per_second is None and limiter._requests.per_second is None
    start = time.monotonic()
    for _ in range(100):
        assert limiter.acquire(1000)
    assert time.monotonic() - start < 0.1  # unpaced, as with no headers at all


@pytest.fixture(params=["local", "redis"])
def limiter_factory(request):
    if request.param == "local":
        return RateLimiter
    pytest.importorskip("redis")
    from skembed.backends._redis_rate_limit import RedisRateLimiter

    server = request.getfixturevalue("redis_server")
    counter = iter(range(10**9))
    return lambda: RedisRateLimiter(
        server.url(), f"test|hostile|{time.monotonic_ns()}|{next(counter)}"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=_FIXTURES)
@given(
    learnt=st.lists(st.tuples(hostile_headers, st.integers(0, 10**6)), min_size=1, max_size=4),
    pause=_HOSTILE,
    n_tokens=st.integers(0, 10**6),
    max_wait=st.floats(0.0, 0.2),
)
def test_a_limiter_fed_hostile_values_never_waits_past_its_cap(
    limiter_factory, learnt, pause, n_tokens, max_wait
):
    limiter = limiter_factory()
    for headers, used in learnt:
        limiter.observe(headers, n_tokens=used)
    limiter.pause(pause)
    for _ in range(2):
        start = time.monotonic()
        assert limiter.acquire(n_tokens, threading.Event(), max_wait) is True
        assert time.monotonic() - start <= max_wait + 0.1
    assert MAX_WAIT == 60.0  # the cap of any wait, whatever max_wait asks


# -- item 14: a huge body is refused unread -----------------------------------------------


def test_a_60_mb_junk_body_is_refused_without_being_parsed(fake_server):
    fake_server.configure(pad_response_bytes=60_000_000, pad_response_kind="junk")
    embedder = OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, cache=None, dimensions=DIM, max_retries=1
    )
    start = time.perf_counter()
    with pytest.raises(EmbeddingAPIError, match="malformed response: its body is over") as info:
        embedder.transform(["one text"])
    assert time.perf_counter() - start < 5
    assert "gave up after 1 retries" in str(info.value)  # retried, like any bad answer
    assert fake_server.stats(texts=False)["requests"] == 2


@settings(max_examples=10, deadline=None, suppress_health_check=_FIXTURES)
@given(n_texts=st.integers(1, 5), offset=st.integers(-3000, 3000))
@example(n_texts=1, offset=0)
@example(n_texts=1, offset=1)
def test_a_body_is_taken_exactly_up_to_its_cap(fake_server, n_texts, offset):
    texts = [f"capped text {i}" for i in range(n_texts)]
    fake_server.reset()
    plain = _body_bytes(fake_server, texts)
    fake_server.configure(pad_response_bytes=10)
    overhead = _body_bytes(fake_server, texts) - plain - 10  # the "padding" field itself
    embedder = OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, cache=None, dimensions=DIM, max_retries=0
    )
    limit = embedder._backend()._body_limit(n_texts)
    size = limit + offset
    fake_server.configure(pad_response_bytes=size - plain - overhead)
    if size <= limit:
        np.testing.assert_allclose(embedder.transform(texts), expected(texts), atol=1e-6)
    else:
        with pytest.raises(EmbeddingAPIError, match="malformed response: its body is over"):
            embedder.transform(texts)


# -- item 14: secrets in the URL -----------------------------------------------------------


def test_query_values_of_base_url_are_masked_in_the_http_clients_log(fake_server, caplog):
    secret = "gw-secret-4f1c9e77"
    url = f"{fake_server.base_url}?gateway-key={secret}&team=ml-{secret}"
    embedder = OpenAIEmbeddingTransformer(base_url=url, cache=None, max_retries=0)
    with (
        caplog.at_level(logging.INFO, logger="httpx2"),
        caplog.at_level(logging.INFO, logger="httpx"),
        pytest.raises(EmbeddingAPIError),  # the SDK drops the path before the query
    ):
        embedder.transform(["x"])
    requests = [r for r in caplog.records if r.name in ("httpx", "httpx2")]
    assert requests, "the HTTP client logged no request: the capture is broken"
    for record in caplog.records:
        assert secret not in record.getMessage()
    assert "gateway-key=***" in requests[0].getMessage()


@pytest.mark.parametrize(
    "userinfo",
    ["alice-8c2f:hunter2-secret@", ":hunter2-secret@", "hunter2-secret@", "bob%40x:p%3Aw0rd@"],
)
def test_credentials_in_base_url_are_refused_before_anything_is_sent(
    fake_server, monkeypatch, userinfo
):
    url = fake_server.base_url.replace("http://", f"http://{userinfo}")
    secrets = [part for part in userinfo.rstrip("@").split(":") if part]
    for call in (
        lambda: OpenAIEmbeddingTransformer(base_url=url).fit(["x"]),
        lambda: OpenAIEmbeddingTransformer(base_url=url, cache=None).transform(["x"]),
        lambda: OpenAIEmbeddingTransformer(base_url=url, api_version="2024-02-01").fit(["x"]),
    ):
        with pytest.raises(ValueError, match="base_url contains credentials") as info:
            call()
        assert not any(secret in str(info.value) for secret in secrets)
    # Through the environment, as the SDK reads it when base_url is None.
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(ValueError, match=r"\$OPENAI_BASE_URL contains credentials") as info:
        OpenAIEmbeddingTransformer(cache=None).transform(["x"])
    assert not any(secret in str(info.value) for secret in secrets)
    stats = fake_server.stats(texts=False)
    assert stats["requests"] == 0 and stats["auth_schemes"] == {}
