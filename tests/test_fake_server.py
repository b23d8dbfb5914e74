"""The fake OpenAI server behaves like the real API, as seen by the official SDK."""

import base64
import contextlib
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import openai
import pytest

from skembed._tokens import count_tokens, get_encoding
from tests.fake_openai import (
    FakeOpenAIServer,
    expected_vector,
    expected_wire_row,
    row_fate,
    wire_items,
)
from tests.fake_openai._ratelimit import format_duration

MODEL = "text-embedding-3-small"
TEXTS = ["hello world", "a second, longer text about cats", "émoji 🚀 and ünïcode"]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_client(server, max_retries=0, **kwargs):
    kwargs.setdefault("api_key", server.api_key)
    return openai.OpenAI(base_url=server.base_url, max_retries=max_retries, **kwargs)


def embed(server, **kwargs):
    return make_client(server).embeddings.create(**{"model": MODEL, **kwargs})


def post(server, body, path="/v1/embeddings", key="server", raw=False):
    """Raw POST; returns (status, headers, JSON body, or the bytes with ``raw``)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {server.api_key if key == 'server' else key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, headers=headers)
    try:
        with _OPENER.open(request, timeout=10) as response:
            content = response.read()
            return response.status, response.headers, content if raw else json.loads(content)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def as_matrix(response):
    rows = sorted(response.data, key=lambda item: item.index)
    return np.array([row.embedding for row in rows], dtype=np.float32)


def expected_matrix(texts, **kwargs):
    return np.array([expected_vector(MODEL, text, **kwargs) for text in texts])


def tokens(n):
    """An input of exactly ``n`` tokens (token ids are counted one each)."""
    return [[1000] * n]


# -- vectors -----------------------------------------------------------------------------


def test_vectors_are_expected_in_every_encoding(fake_server):
    expected = expected_matrix(TEXTS)
    assert expected.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(expected, axis=1), 1, atol=1e-6)
    # The SDK asks for base64 and decodes it when no format is given.
    default = embed(fake_server, input=TEXTS)
    floats = embed(fake_server, input=TEXTS, encoding_format="float")
    raw = embed(fake_server, input=TEXTS, encoding_format="base64")
    decoded = [np.frombuffer(base64.b64decode(row.embedding), "<f4") for row in raw.data]
    by_index = np.array([decoded[[row.index for row in raw.data].index(i)] for i in range(3)])
    for matrix in (as_matrix(default), as_matrix(floats), by_index):
        np.testing.assert_array_equal(matrix, expected)
    assert default.usage.prompt_tokens == default.usage.total_tokens == count_tokens(TEXTS).sum()
    assert default.model == MODEL and default.object == "list"


def test_dimensions_truncate_and_renormalise(fake_server):
    response = embed(fake_server, input=TEXTS, dimensions=256)
    native = expected_matrix(TEXTS)
    truncated = native[:, :256] / np.linalg.norm(native[:, :256], axis=1, keepdims=True)
    assert as_matrix(response).shape == (3, 256)
    np.testing.assert_array_equal(as_matrix(response), expected_matrix(TEXTS, dimensions=256))
    np.testing.assert_allclose(as_matrix(response), truncated, atol=1e-6)
    large = embed(fake_server, model="text-embedding-3-large", input="x")
    assert len(large.data[0].embedding) == 3072


def test_token_id_inputs_get_the_vector_of_their_text(fake_server):
    encoding = get_encoding("cl100k_base")
    ids = [encoding.encode(text) for text in TEXTS]
    single = embed(fake_server, input=ids[0])
    several = embed(fake_server, input=ids)
    np.testing.assert_array_equal(as_matrix(single)[0], expected_vector(MODEL, TEXTS[0]))
    np.testing.assert_array_equal(as_matrix(several), expected_matrix(TEXTS))
    assert several.usage.prompt_tokens == sum(map(len, ids))
    assert fake_server.stats()["text_counts"] == {TEXTS[0]: 2, TEXTS[1]: 1, TEXTS[2]: 1}


def test_data_is_shuffled_but_indexed(fake_server):
    texts = [f"text {i}" for i in range(64)]
    response = embed(fake_server, input=texts)
    indices = [row.index for row in response.data]
    assert sorted(indices) == list(range(64)) and indices != sorted(indices)
    np.testing.assert_array_equal(as_matrix(response), expected_matrix(texts))
    fake_server.configure(shuffle=False)
    assert [row.index for row in embed(fake_server, input=texts).data] == list(range(64))


def test_bag_of_words_vectors_follow_shared_words(fake_server):
    fake_server.configure(vector_mode="bag_of_words")
    texts = ["the cat sat on the mat", "The cat sat on a mat!", "stock markets fell sharply"]
    vectors = as_matrix(embed(fake_server, input=texts))
    expected = expected_matrix(texts, vector_mode="bag_of_words")
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert vectors[0] @ vectors[1] > 0.6 > 0.2 > abs(vectors[0] @ vectors[2])


def test_extra_models_without_dimensions_support(fake_server):
    fake_server.configure(extra_models={"local-model": 8})
    response = embed(fake_server, model="local-model", input=TEXTS)
    expected = [expected_vector("local-model", text, native_dim=8) for text in TEXTS]
    np.testing.assert_array_equal(as_matrix(response), expected)
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        embed(fake_server, model="local-model", input="x", dimensions=4)


# -- validation and auth -----------------------------------------------------------------

_LONG = "word" + " word" * 8192  # 8193 tokens
_INVALID_INPUT = "'$.input' is invalid. Please check the API reference"


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "message"),
    [
        ({"input": ""}, 400, None, _INVALID_INPUT),
        ({"input": ["a", ""]}, 400, None, _INVALID_INPUT),
        ({"input": []}, 400, None, _INVALID_INPUT),
        ({"input": [[1, 2], []]}, 400, None, _INVALID_INPUT),
        ({"input": ["a", 1]}, 400, None, _INVALID_INPUT),
        ({"input": ["x"] * 2049}, 400, None, _INVALID_INPUT),
        (
            {"input": [_LONG]},
            400,
            None,
            "maximum context length is 8192 tokens, however you requested 8193 tokens",
        ),
        (
            {"input": ["word" + " word" * 7999] * 38},
            400,
            "max_tokens_per_request",
            "Requested 304000 tokens, max 300000 tokens per request",
        ),
        (
            {"input": "x", "model": "no-such-model"},
            404,
            "model_not_found",
            "The model `no-such-model` does not exist",
        ),
        (
            {"input": "x", "model": "text-embedding-ada-002", "dimensions": 8},
            400,
            None,
            "This model does not support specifying dimensions.",
        ),
        ({"input": "x", "dimensions": 0}, 400, "integer_below_min_value", "'dimensions'"),
        ({"input": "x", "dimensions": 1537}, 400, None, "maximum dimensions is 1536"),
        ({"input": "x", "encoding_format": "int8"}, 400, None, "'encoding_format'"),
        ({"input": "x", "extra_body": {"foo": 1}}, 400, None, "argument supplied: foo"),
    ],
)
def test_validation_errors(fake_server, kwargs, status, code, message):
    with pytest.raises(openai.APIStatusError) as info:
        embed(fake_server, **kwargs)
    error = info.value
    assert error.status_code == status
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.code == code
    assert message in error.body["message"]
    stats = fake_server.stats()
    assert stats["requests_by_status"] == {str(status): 1}
    assert stats["inputs"] == stats["tokens"] == 0


def test_malformed_json_and_unknown_route(fake_server):
    status, _, body = post(fake_server, b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("We could not parse the JSON body")
    status, _, body = post(fake_server, {}, path="/v1/nothing")
    assert (status, body["error"]["message"]) == (404, "Invalid URL (POST /v1/nothing)")


def test_missing_and_wrong_api_key(fake_server):
    status, _, body = post(fake_server, {"model": MODEL, "input": "x"}, key=None)
    assert status == 401 and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"].startswith("You didn't provide an API key.")
    assert body["error"]["code"] is None
    wrong = "sk-wrongkey-0123456789abcdefWXYZ"
    with pytest.raises(openai.AuthenticationError) as info:
        embed_with = make_client(fake_server, api_key=wrong)
        embed_with.embeddings.create(model=MODEL, input="x")
    assert info.value.code == "invalid_api_key"
    message = info.value.body["message"]
    assert message.startswith("Incorrect API key provided: sk-wr*") and "WXYZ." in message
    assert wrong not in message and "0123456789" not in message
    assert fake_server.stats()["requests_by_status"] == {"401": 2}


def test_sent_sizes_count_rejected_requests(fake_server):
    embed(fake_server, input=["a", "b"])
    embed(fake_server, input=["a"])
    with pytest.raises(openai.BadRequestError):
        embed(fake_server, input=["y"] * 2049)
    stats = fake_server.stats()
    assert stats["max_inputs_per_request"] == 2 and stats["max_tokens_per_request"] == 2
    assert stats["max_inputs_per_request_sent"] == 2049
    assert stats["max_tokens_per_request_sent"] == 2049
    assert (stats["inputs"], stats["tokens"], stats["requests"]) == (3, 3, 3)
    assert stats["text_counts"] == {"a": 2, "b": 1} and stats["times_embedded_max"] == 2
    assert "text_counts" not in fake_server.stats(texts=False)


# -- rate limits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.12, "120ms"), (1, "1s"), (1.5, "1.5s"), (360, "6m0s"), (3725.5, "1h2m5.5s")],
)
def test_format_duration_like_the_api(seconds, text):
    assert format_duration(seconds) == text


def test_no_ratelimit_headers_without_limits(fake_server):
    _, headers, _ = post(fake_server, {"model": MODEL, "input": "x"})
    assert not [name for name in headers if name.lower().startswith("x-ratelimit")]


def test_token_limit_429_consumes_nothing(fake_server):
    fake_server.configure(tpm=12)  # a bucket of 12 tokens, refilled at 0.2 token/s
    status, headers, _ = post(fake_server, {"model": MODEL, "input": tokens(10)})
    assert status == 200
    assert headers["x-ratelimit-limit-tokens"] == "12"
    assert headers["x-ratelimit-remaining-tokens"] == "2"
    assert re.fullmatch(r"(4\d(\.\d+)?|50)s", headers["x-ratelimit-reset-tokens"])
    assert "x-ratelimit-limit-requests" not in headers

    status, headers, body = post(fake_server, {"model": MODEL, "input": tokens(10)})
    assert status == 429
    error = body["error"]
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert "on tokens per min (TPM): Limit 12, Used 10, Requested 10." in error["message"]
    assert 35_000 <= int(headers["retry-after-ms"]) <= 40_000
    assert headers["retry-after"] == "40"
    assert headers["x-ratelimit-remaining-tokens"] == "2"

    status, headers, _ = post(fake_server, {"model": MODEL, "input": tokens(2)})
    assert status == 200 and headers["x-ratelimit-remaining-tokens"] == "0"
    stats = fake_server.stats()
    assert stats["tokens"] == 12
    assert stats["requests_by_status"] == {"200": 2, "429": 1}


def test_request_too_large_for_the_token_bucket(fake_server):
    fake_server.configure(tpm=12)
    status, headers, body = post(fake_server, {"model": MODEL, "input": tokens(13)})
    assert status == 429
    message = body["error"]["message"]
    assert message.startswith(f"Request too large for {MODEL} in organization")
    assert "Limit 12, Requested 13. The input or output tokens must be reduced" in message
    assert "retry-after" not in headers and "retry-after-ms" not in headers
    assert headers["x-ratelimit-remaining-tokens"] == "12"


def test_request_limit_and_reconfiguring_refills(fake_server):
    fake_server.configure(rpm=2)
    assert [post(fake_server, {"model": MODEL, "input": "x"})[0] for _ in range(2)] == [200, 200]
    status, headers, body = post(fake_server, {"model": MODEL, "input": "x"})
    assert status == 429 and body["error"]["type"] == "requests"
    assert "on requests per min (RPM): Limit 2, Used 2, Requested 1." in body["error"]["message"]
    assert 29_000 <= int(headers["retry-after-ms"]) <= 30_000
    fake_server.configure(rpm=2)  # a new limit starts with a full bucket
    status, headers, _ = post(fake_server, {"model": MODEL, "input": "x"})
    assert status == 200 and headers["x-ratelimit-remaining-requests"] == "1"


def test_sdk_waits_retry_after_ms_and_succeeds(fake_server):
    fake_server.configure(tpm=6000, burst_seconds=1)  # bucket of 100, 100 tokens/s
    client = make_client(fake_server, max_retries=2)
    client.embeddings.create(model=MODEL, input=tokens(80))
    start = time.perf_counter()
    client.embeddings.create(model=MODEL, input=tokens(80))
    assert 0.55 <= time.perf_counter() - start < 5.0
    assert fake_server.stats()["requests_by_status"] == {"200": 2, "429": 1}


# -- latency and faults ------------------------------------------------------------------


def test_latency_is_applied(fake_server):
    fake_server.configure(latency=0.2, latency_per_1k_tokens=0.2)
    start = time.perf_counter()
    embed(fake_server, input=tokens(1000))
    assert time.perf_counter() - start >= 0.4


@pytest.mark.parametrize(
    ("fault", "exception", "status"),
    [
        ({"kind": "500"}, openai.InternalServerError, "500"),
        ({"kind": "503"}, openai.InternalServerError, "503"),
        ({"kind": "429", "retry_after": 0.25}, openai.RateLimitError, "429"),
        ({"kind": "drop"}, openai.APIConnectionError, "drop"),
        ({"kind": "timeout", "seconds": 2.0}, openai.APITimeoutError, "timeout"),
    ],
)
def test_each_fault_kind(fake_server, fault, exception, status):
    fake_server.configure(faults=[fault], tpm=1000)
    client = make_client(fake_server, timeout=0.5 if status == "timeout" else 30)
    with pytest.raises(exception) as info:
        client.embeddings.create(model=MODEL, input="x")
    if status == "429":
        assert info.value.response.headers["retry-after-ms"] == "250"
    if status in ("500", "503"):
        assert info.value.body["type"] == "server_error"
    if status == "drop":
        assert not isinstance(info.value, openai.APITimeoutError)
    response = make_client(fake_server).embeddings.with_raw_response.create(model=MODEL, input="x")
    assert response.headers["x-ratelimit-remaining-tokens"] == "999"  # the fault was free
    if status != "timeout":  # that request is still sleeping on the server
        stats = fake_server.stats()
        assert stats["requests_by_status"] == {status: 1, "200": 1}
        assert stats["tokens"] == 1


def test_faults_are_consumed_in_order(fake_server):
    fake_server.configure(faults=[{"kind": "ok"}, {"kind": "500"}])
    client = make_client(fake_server)
    client.embeddings.create(model=MODEL, input="x")
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model=MODEL, input="x")
    client.embeddings.create(model=MODEL, input="x")


def test_random_faults_are_reproducible(fake_server):
    def statuses():
        fake_server.reset()
        fake_server.configure(p_500=0.5, fault_seed=3)
        return [post(fake_server, {"model": MODEL, "input": "x"})[0] for _ in range(12)]

    first = statuses()
    assert first == statuses() and set(first) == {200, 500}


def test_sdk_retries_recover_from_a_500(fake_server):
    fake_server.configure(faults=[{"kind": "500"}])
    response = make_client(fake_server, max_retries=2).embeddings.create(model=MODEL, input="x")
    np.testing.assert_array_equal(as_matrix(response)[0], expected_vector(MODEL, "x"))
    stats = fake_server.stats()
    assert stats["requests"] == 2 and stats["requests_by_status"] == {"500": 1, "200": 1}


def test_peak_concurrency(fake_server):
    fake_server.configure(latency=0.5)
    client = make_client(fake_server)
    barrier = threading.Barrier(4)

    def call(i):
        barrier.wait()
        client.embeddings.create(model=MODEL, input=f"text {i}")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = fake_server.stats()
    assert stats["peak_concurrency"] == 4 and stats["requests_by_status"] == {"200": 4}


# -- Azure, control and the controller ---------------------------------------------------


def test_azure_route(fake_server):
    def azure(api_key):
        return openai.AzureOpenAI(
            azure_endpoint=fake_server.url,
            api_version="2024-02-01",
            api_key=api_key,
            max_retries=0,
        )

    response = azure(fake_server.api_key).embeddings.create(model=MODEL, input=TEXTS)
    np.testing.assert_array_equal(as_matrix(response), expected_matrix(TEXTS))
    with pytest.raises(openai.AuthenticationError) as info:
        azure("wrong-key-0000000000000").embeddings.create(model=MODEL, input="x")
    assert info.value.code == "401" and "wrong-key" not in str(info.value)
    with pytest.raises(openai.NotFoundError) as info:
        azure(fake_server.api_key).embeddings.create(model="my-deployment", input="x")
    assert info.value.code == "DeploymentNotFound"
    status, _, _ = post(fake_server, {"input": "x"}, path=f"/openai/deployments/{MODEL}/embeddings")
    assert status == 404  # no api-version


def test_control_reset_and_reset_stats(fake_server):
    fake_server.configure(api_key="sk-changed-key-000000000000")
    assert fake_server.api_key == "sk-changed-key-000000000000"
    embed(fake_server, input="x")
    with pytest.raises(ValueError, match="vector_mode"):
        fake_server.configure(vector_mode="nope")
    with pytest.raises(ValueError, match="Unknown configuration keys"):
        fake_server.configure(rpn=3)
    fake_server.reset_stats()
    assert fake_server.stats()["requests"] == 0
    embed(fake_server, input="x")  # reset_stats keeps the configuration
    fake_server.reset()
    assert fake_server.api_key != "sk-changed-key-000000000000"
    assert fake_server.stats()["requests"] == 0
    embed(fake_server, input="x")


def test_controller_lifecycle():
    with pytest.raises(ValueError, match="burst_seconds"):
        FakeOpenAIServer(burst_seconds=0)
    with FakeOpenAIServer(api_key="sk-own-key-0000000000000", latency=0.01) as server:
        process = server._process
        assert embed(server, input="x").usage.prompt_tokens == 1
        server.configure(latency=0.0)
        server.reset()
        assert embed(server, input="x").usage.prompt_tokens == 1
    assert process.returncode == 0  # SIGTERM is a clean shutdown
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    with pytest.raises(RuntimeError, match="did not report its port"):
        FakeOpenAIServer(start_timeout=0.001).start()


# -- hostile answers ---------------------------------------------------------------------

HOSTILE_ROWS = {
    "fault_seed": 7,
    "vector_log10_scale": [-30, 30],
    "p_zero_row": 0.15,
    "p_nonfinite_row": 0.1,
}
MANY = [f"row text {i}" for i in range(80)]


def wire_rows(response, encoding_format):
    """The rows as decoded from the wire, in index order (float64 or float32)."""
    rows = sorted(response.data, key=lambda item: item.index)
    if encoding_format == "float":
        return np.array([row.embedding for row in rows], dtype=np.float64)
    return np.array([np.frombuffer(base64.b64decode(row.embedding), "<f4") for row in rows])


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_row_magnitudes_zero_and_nonfinite_rows_are_predicted(fake_server, encoding_format):
    fake_server.configure(**HOSTILE_ROWS)
    response = embed(fake_server, input=MANY, encoding_format=encoding_format)
    rows = wire_rows(response, encoding_format)
    expected = np.array(
        [expected_wire_row(MODEL, t, encoding_format=encoding_format, **HOSTILE_ROWS) for t in MANY]
    )
    assert rows.dtype == expected.dtype == (np.float64 if encoding_format == "float" else "<f4")
    np.testing.assert_array_equal(rows, expected)  # NaN where NaN is expected
    fates = [row_fate(text, 1536, **HOSTILE_ROWS) for text in MANY]
    kinds = [fate.kind for fate in fates]
    assert {"zero", "nonfinite", "scaled"} == set(kinds)
    for row, fate, text in zip(rows, fates, MANY, strict=True):
        if fate.kind == "zero":
            assert not row.any()
        elif fate.kind == "nonfinite":
            assert np.isnan(row[fate.nan_at]) and row[fate.inf_at] == np.inf
            assert np.isfinite(row).sum() == 1534
        else:
            unit = expected_vector(MODEL, text).astype(np.float64)
            norm = np.linalg.norm(row.astype(np.float64))
            assert norm == pytest.approx(fate.scale, rel=1e-5)
            np.testing.assert_allclose(row / norm, unit, rtol=1e-5, atol=1e-7)
    exponents = [fate.log10_scale for fate in fates]
    assert min(exponents) < -20 and max(exponents) > 20
    # A text's fate depends on the seed and the text only: alone, reordered, as token ids.
    again = embed(fake_server, input=[MANY[5], *MANY[:3]], encoding_format=encoding_format)
    np.testing.assert_array_equal(wire_rows(again, encoding_format), expected[[5, 0, 1, 2]])
    ids = get_encoding("cl100k_base").encode(MANY[5])
    as_ids = embed(fake_server, input=[ids], encoding_format=encoding_format)
    np.testing.assert_array_equal(wire_rows(as_ids, encoding_format)[0], expected[5])
    reseeded = {**HOSTILE_ROWS, "fault_seed": 8}
    fake_server.configure(fault_seed=8)
    assert [row_fate(text, 1536, **reseeded).kind for text in MANY] != kinds
    response = embed(fake_server, input=MANY[:1], encoding_format=encoding_format)
    np.testing.assert_array_equal(
        wire_rows(response, encoding_format)[0],
        expected_wire_row(MODEL, MANY[0], encoding_format=encoding_format, **reseeded),
    )


def test_rows_beyond_float32_range_are_inf_in_base64_only(fake_server):
    knobs = {"vector_log10_scale": [42, 43]}
    fake_server.configure(**knobs)
    floats = wire_rows(embed(fake_server, input=TEXTS, encoding_format="float"), "float")
    assert np.isfinite(floats).all() and (np.abs(floats).max(axis=1) > 3.5e38).all()
    packed = wire_rows(embed(fake_server, input=TEXTS, encoding_format="base64"), "base64")
    assert np.isinf(packed).any(axis=1).all()
    # The SDK's own base64 decoding (no encoding_format given) sees the same float32 rows.
    np.testing.assert_array_equal(as_matrix(embed(fake_server, input=TEXTS)), packed)
    for matrix, encoding_format in ((floats, "float"), (packed, "base64")):
        expected = [
            expected_wire_row(MODEL, t, encoding_format=encoding_format, **knobs) for t in TEXTS
        ]
        np.testing.assert_array_equal(matrix, expected)
    fake_server.configure(vector_log10_scale=[-50, -49])  # below float32's subnormals
    packed = wire_rows(embed(fake_server, input=TEXTS, encoding_format="base64"), "base64")
    assert not packed.any()
    assert wire_rows(embed(fake_server, input=TEXTS, encoding_format="float"), "float").all()


def test_row_knobs_reach_batch_output_lines(fake_server):
    fake_server.configure(**HOSTILE_ROWS)
    lines = run_batch(fake_server, [MANY[:40], MANY[40:]], encoding_format="float")
    rows = {}
    for line in lines:
        body = json.loads(line)["response"]["body"]
        for item in body["data"]:
            rows[json.loads(line)["custom_id"], item["index"]] = item["embedding"]
    for position, text in enumerate(MANY):
        row = np.array(rows[f"line-{position // 40}", position % 40], dtype=np.float64)
        expected = expected_wire_row(MODEL, text, encoding_format="float", **HOSTILE_ROWS)
        np.testing.assert_array_equal(row, expected)


def run_batch(server, inputs, **body):
    """Run one batch of ``inputs`` (one list of texts per line) through the SDK.

    Returns the output file's lines (bytes), after the batch completed.
    """
    client = make_client(server)
    content = b"".join(
        json.dumps(
            {
                "custom_id": f"line-{number}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": MODEL, "input": texts, **body},
            }
        ).encode()
        + b"\n"
        for number, texts in enumerate(inputs)
    )
    upload = client.files.create(file=("in.jsonl", content), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    deadline = time.monotonic() + 30
    while batch.status != "completed":
        assert time.monotonic() < deadline, batch.status
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    return client.files.content(batch.output_file_id).content.splitlines()


@pytest.mark.parametrize("index_fault", ["fractional", "duplicate", "missing"])
@pytest.mark.parametrize("n_rows", [1, 4])
def test_index_faults_on_the_wire(fake_server, index_fault, n_rows):
    fake_server.configure(index_fault=index_fault)
    texts = [f"indexed {i}" for i in range(n_rows)]
    status, _, body = post(
        fake_server, {"model": MODEL, "input": texts, "encoding_format": "float"}
    )
    assert status == 200
    expected = wire_items(n_rows, index_fault)
    # Shuffled as usual, so match the items by their vector: each is its own row's.
    sent = []
    for item in body["data"]:
        vector = np.array(item["embedding"], dtype=np.float32)
        row = [i for i, t in enumerate(texts) if np.array_equal(vector, expected_vector(MODEL, t))]
        sent.append((row[0], item["index"]))
    assert sorted(sent) == sorted(expected)
    indices = [index for _, index in expected]
    if index_fault == "fractional":
        assert indices[-1] == (2.5 if n_rows == 4 else 0.5)
        assert isinstance(next(i["index"] for i in body["data"] if i["index"] % 1), float)
    elif index_fault == "duplicate":
        assert len(indices) == max(n_rows, 2) and len(set(indices)) == len(indices) - 1
    else:
        assert len(body["data"]) == n_rows - 1
    # The SDK passes the index through unchecked (a float stays a float), but refuses an
    # empty list when it decodes base64 itself.
    if not indices:
        with pytest.raises(ValueError, match="No embedding data received"):
            embed(fake_server, input=texts)
    else:
        response = embed(fake_server, input=texts)
        assert sorted(item.index for item in response.data) == sorted(indices)
    assert fake_server.stats()["inputs"] == 2 * n_rows  # answered, so charged


def test_width_sequence_changes_widths_between_answers(fake_server):
    fake_server.configure(extra_models={"unknown-width": 40}, width_sequence=[40, 1])
    client = make_client(fake_server)
    widths = []
    for _ in range(3):
        response = client.embeddings.create(model="unknown-width", input=TEXTS)
        matrix = as_matrix(response)
        widths.append(matrix.shape[1])
        expected = [expected_vector("unknown-width", t, native_dim=widths[-1]) for t in TEXTS]
        np.testing.assert_array_equal(matrix, expected)
    assert widths == [40, 1, 1]
    # Setting it again starts over; answers to a `dimensions` request keep their width.
    fake_server.configure(width_sequence=[3, 5])
    assert len(embed(fake_server, input="x", dimensions=8).data[0].embedding) == 8
    assert len(embed(fake_server, input="x").data[0].embedding) == 5  # the second answer
    fake_server.reset()
    assert len(embed(fake_server, input="x").data[0].embedding) == 1536


def test_trickled_body_outlasts_the_client_timeout(fake_server):
    fake_server.configure(
        extra_models={"m64": 64}, trickle_seconds_per_chunk=0.02, trickle_chunk_bytes=64
    )
    client = make_client(fake_server, timeout=0.3)
    start = time.perf_counter()
    response = client.embeddings.create(model="m64", input=TEXTS, encoding_format="float")
    elapsed = time.perf_counter() - start
    # Each read gets 64 bytes within 0.02 s, so the SDK's 0.3 s timeout never fires.
    assert elapsed > 0.6
    expected = [expected_vector("m64", t, native_dim=64) for t in TEXTS]
    np.testing.assert_array_equal(as_matrix(response), expected)
    # On the wire: the head at once, then the body in pieces of at most 64 bytes.
    connection = http.client.HTTPConnection("127.0.0.1", port_of(fake_server), timeout=5)
    body = json.dumps({"model": "m64", "input": TEXTS, "encoding_format": "float"})
    connection.request("POST", "/v1/embeddings", body, auth_headers(fake_server))
    start = time.perf_counter()
    answer = connection.getresponse()
    head_seconds = time.perf_counter() - start
    pieces = []
    while piece := answer.read1(4096):
        pieces.append(piece)
    assert head_seconds < 0.3 < time.perf_counter() - start
    assert len(pieces) > 10 and max(map(len, pieces)) <= 64
    assert int(answer.headers["Content-Length"]) == sum(map(len, pieces))


def port_of(server):
    return int(server.url.rsplit(":", 1)[1])


def auth_headers(server, authorization=None):
    return {
        "Content-Type": "application/json",
        "Authorization": authorization or f"Bearer {server.api_key}",
    }


ABSURD = {
    "x-ratelimit-remaining-requests": "-100000",
    "x-ratelimit-limit-tokens": "0.0001",
    "Retry-After": "1e9",
}


def test_extra_headers_on_success_and_429(fake_server):
    fake_server.configure(tpm=1000, rpm=100, extra_headers=ABSURD)
    status, headers, _ = post(fake_server, {"model": MODEL, "input": "x"})
    assert status == 200
    assert headers["x-ratelimit-remaining-requests"] == "-100000"
    assert headers["x-ratelimit-limit-tokens"] == "0.0001"
    assert headers["x-ratelimit-remaining-tokens"] == "999"  # not overridden: still true
    assert headers.get_all("retry-after") == ["1e9"]
    fake_server.configure(faults=[{"kind": "429", "retry_after": 0.5}])
    status, headers, _ = post(fake_server, {"model": MODEL, "input": "x"})
    assert status == 429
    # One header per name: the configured value replaces the computed one, any case.
    assert headers.get_all("retry-after") == ["1e9"] and headers["retry-after-ms"] == "500"
    # The SDK refuses to retry a Retry-After over two minutes: it raises at once.
    fake_server.configure(faults=[{"kind": "429"}])
    fake_server.reset_stats()
    start = time.perf_counter()
    with pytest.raises(openai.RateLimitError):
        make_client(fake_server, max_retries=3).embeddings.create(model=MODEL, input="x")
    assert time.perf_counter() - start < 1 and fake_server.stats()["requests"] == 1


def test_azure_style_minus_one_headers(fake_server):
    unknown = {
        f"x-ratelimit-{kind}-{what}": "-1"
        for kind in ("limit", "remaining")
        for what in ("requests", "tokens")
    }
    fake_server.configure(extra_headers=unknown)
    client = openai.AzureOpenAI(
        azure_endpoint=fake_server.url,
        api_version="2024-02-01",
        api_key=fake_server.api_key,
        max_retries=0,
    )
    raw = client.embeddings.with_raw_response.create(model=MODEL, input=TEXTS)
    assert {name: raw.headers[name] for name in unknown} == unknown
    np.testing.assert_array_equal(as_matrix(raw.parse()), expected_matrix(TEXTS))


@pytest.mark.parametrize(
    ("updates", "key"),
    [
        ({"vector_log10_scale": [3, 1]}, "vector_log10_scale"),
        ({"vector_log10_scale": [1]}, "vector_log10_scale"),
        ({"vector_log10_scale": [-400, 1]}, "vector_log10_scale"),
        ({"p_zero_row": -0.1}, "p_zero_row"),
        ({"p_zero_row": 0.6, "p_nonfinite_row": 0.6}, "p_nonfinite_row"),
        ({"index_fault": "negative"}, "index_fault"),
        ({"width_sequence": []}, "width_sequence"),
        ({"width_sequence": [40, 0]}, "width_sequence"),
        ({"trickle_seconds_per_chunk": -1}, "trickle_seconds_per_chunk"),
        ({"trickle_chunk_bytes": 0}, "trickle_chunk_bytes"),
        ({"extra_headers": {"bad name": "1"}}, "extra_headers"),
        ({"extra_headers": {"Content-Length": "1"}}, "extra_headers"),
        ({"extra_headers": {"retry-after": "1\r\nx-injected: 1"}}, "extra_headers"),
        ({"extra_headers": {"retry-after": 1}}, "extra_headers"),
        ({"pad_response_bytes": -1}, "pad_response_bytes"),
        ({"pad_response_kind": "xml"}, "pad_response_kind"),
    ],
)
def test_hostile_knobs_are_validated(fake_server, updates, key):
    with pytest.raises(ValueError, match=key):
        fake_server.configure(**updates)
    with pytest.raises(ValueError, match=key):
        FakeOpenAIServer(**updates)


@pytest.mark.parametrize("kind", ["json", "junk"])
def test_padded_answers(fake_server, kind):
    _, _, plain = post(fake_server, {"model": MODEL, "input": TEXTS}, raw=True)
    fake_server.configure(pad_response_bytes=100_000, pad_response_kind=kind)
    status, headers, padded = post(fake_server, {"model": MODEL, "input": TEXTS}, raw=True)
    assert status == 200 and int(headers["Content-Length"]) == len(padded)
    if kind == "json":
        assert len(padded) == len(plain) + 100_000 + len(',"padding":""')
        assert json.loads(padded)["padding"] == "x" * 100_000
        # The SDK ignores the field.
        np.testing.assert_array_equal(
            as_matrix(embed(fake_server, input=TEXTS)), expected_matrix(TEXTS)
        )
    else:
        assert len(padded) == len(plain) + 100_000
        with pytest.raises(json.JSONDecodeError, match="Extra data"):
            json.loads(padded)
        # The SDK lets the raw JSONDecodeError through.
        with pytest.raises(json.JSONDecodeError):
            embed(fake_server, input=TEXTS)


def read_response(sock, buffer=b""):
    """One HTTP response from ``sock``: ``(status, body, bytes read beyond it)``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), rest[:length], rest[length:]


def raw_request(server, text):
    body = json.dumps({"model": MODEL, "input": [text], "encoding_format": "float"})
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.api_key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return (head + body).encode()


def vector_of(body):
    return np.array(json.loads(body)["data"][0]["embedding"], dtype=np.float32)


def test_slow_answer_arrives_late_on_the_same_keep_alive_connection(fake_server):
    fake_server.configure(faults=[{"kind": "slow", "seconds": 0.6}])
    with socket.create_connection(("127.0.0.1", port_of(fake_server))) as sock:
        start = time.perf_counter()
        sock.sendall(raw_request(fake_server, "late text"))
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):  # the client gives up, but keeps the socket
            sock.recv(1)
        # Whoever sends next on that socket (a forked sibling) reads the late answer first.
        sock.sendall(raw_request(fake_server, "next text"))
        sock.settimeout(10)
        status, body, rest = read_response(sock)
        assert status == 200 and time.perf_counter() - start >= 0.6
        np.testing.assert_array_equal(vector_of(body), expected_vector(MODEL, "late text"))
        status, body, _ = read_response(sock, rest)
        np.testing.assert_array_equal(vector_of(body), expected_vector(MODEL, "next text"))
    stats = fake_server.stats()
    assert stats["requests_by_status"] == {"slow": 1, "200": 1}
    assert stats["text_counts"] == {"late text": 1, "next text": 1}


def test_timeout_fault_closes_the_connection_without_an_answer(fake_server):
    fake_server.configure(faults=[{"kind": "timeout", "seconds": 0.3}])
    with socket.create_connection(("127.0.0.1", port_of(fake_server))) as sock:
        start = time.perf_counter()
        sock.sendall(raw_request(fake_server, "never answered"))
        sock.settimeout(10)
        # The connection closes (FIN, or a reset): not one byte of answer comes back.
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(65536) == b""
        assert time.perf_counter() - start >= 0.3
    assert fake_server.stats()["requests_by_status"] == {"timeout": 1}


def test_a_late_answer_reaches_a_forked_sibling_through_the_sdk(fake_server):
    # What issue 15's fork tests build on: the pooled connection survives os.fork.
    client = make_client(fake_server, timeout=10)
    client.embeddings.create(model=MODEL, input="warm")  # one idle keep-alive connection
    fake_server.configure(faults=[{"kind": "slow", "seconds": 2.0}])
    pid = os.fork()
    if pid == 0:  # the child: times out, leaves its answer to come on the shared socket
        code = 1
        try:
            client.embeddings.create(model=MODEL, input="child text", timeout=0.3)
        except openai.APITimeoutError:
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    response = client.embeddings.create(model=MODEL, input="parent text")
    np.testing.assert_array_equal(as_matrix(response)[0], expected_vector(MODEL, "child text"))
    # The parent had the child's answer before the server has answered its own request.
    expected_counts = {"warm": 1, "child text": 1, "parent text": 1}
    assert fake_server.settled_stats()["text_counts"] == expected_counts


def test_auth_schemes_are_recorded_and_keys_compared_exactly(fake_server):
    embed(fake_server, input="x")
    with pytest.raises(openai.AuthenticationError) as info:  # sent as is by the SDK
        make_client(fake_server, api_key=" " + fake_server.api_key).embeddings.create(
            model=MODEL, input="x"
        )
    assert info.value.code == "invalid_api_key"
    status, _, _ = post(fake_server, {"model": MODEL, "input": "x"}, key=None)
    assert status == 401
    trailing = auth_headers(fake_server, f"Bearer {fake_server.api_key} ")
    connection = http.client.HTTPConnection("127.0.0.1", port_of(fake_server), timeout=10)
    connection.request(
        "POST", "/v1/embeddings", json.dumps({"model": MODEL, "input": "x"}), trailing
    )
    assert connection.getresponse().status == 401
    # userinfo in base_url: the SDK sends Basic credentials instead of its key.
    with_userinfo = fake_server.base_url.replace("http://", "http://user:secret@")
    client = openai.OpenAI(base_url=with_userinfo, api_key=fake_server.api_key, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model=MODEL, input="x")
    # A blank username with the key as password is accepted, as the API's 401 text says.
    key_as_password = fake_server.base_url.replace("http://", f"http://:{fake_server.api_key}@")
    client = openai.OpenAI(base_url=key_as_password, api_key="sk-another-key", max_retries=0)
    assert client.embeddings.create(model=MODEL, input="x").data
    stats = fake_server.stats()
    assert stats["auth_schemes"] == {"bearer": 3, "missing": 1, "basic": 2}
    assert stats["auth_malformed"] == 2  # the leading and the trailing space
    assert stats["requests_by_status"] == {"200": 2, "401": 4}


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\u2013"])
def test_keys_the_sdk_cannot_send_never_arrive(fake_server, suffix):
    client = make_client(fake_server, api_key=fake_server.api_key + suffix)
    # Illegal in a header: h11 refuses it, the SDK calls that a connection error (and would
    # retry it); a non-ASCII key fails to encode before anything is sent.
    expected = UnicodeEncodeError if suffix == "\u2013" else openai.APIConnectionError
    with pytest.raises(expected):
        client.embeddings.create(model=MODEL, input="x")
    assert fake_server.stats()["requests"] == 0


def test_azure_api_key_header_is_recorded(fake_server):
    client = openai.AzureOpenAI(
        azure_endpoint=fake_server.url,
        api_version="2024-02-01",
        api_key=fake_server.api_key,
        max_retries=0,
    )
    client.embeddings.create(model=MODEL, input="x")
    assert fake_server.stats()["auth_schemes"] == {"api-key": 1}


def malformed_ids(lines):
    """custom_ids of the lines that are not valid JSON (read from their first half)."""
    bad = []
    for line in lines:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            bad.append(re.search(rb'"custom_id": "([^"]+)"', line)[1].decode())
    return bad


def test_batch_output_with_malformed_lines(fake_server):
    inputs = [[f"batch text {i}"] for i in range(10)]
    fake_server.configure_batches(malformed_output_lines=1)
    lines = run_batch(fake_server, inputs)
    first = malformed_ids(lines)
    assert len(lines) == 10 and len(first) == 1
    stats = fake_server.stats()
    assert stats["batch_malformed_lines"] == 1 and stats["batch_lines"] == 10  # all charged
    # Deterministic: the same seed picks the same line again after a reset.
    fake_server.reset()
    fake_server.configure_batches(malformed_output_lines=1)
    assert malformed_ids(run_batch(fake_server, inputs)) == first
    fake_server.configure_batches(malformed_output_lines=0, malformed_output_fraction=0.5)
    assert len(malformed_ids(run_batch(fake_server, inputs))) == 5
    # A plan applies to one batch only.
    fake_server.configure_batches(
        malformed_output_fraction=0.0, plans=[{"malformed_output_lines": 2}]
    )
    assert len(malformed_ids(run_batch(fake_server, inputs))) == 2
    assert malformed_ids(run_batch(fake_server, inputs)) == []
    with pytest.raises(ValueError, match="malformed_output_fraction"):
        fake_server.configure_batches(malformed_output_fraction=2)
    with pytest.raises(ValueError, match=r"plans\[0\].malformed_output_lines"):
        fake_server.configure_batches(plans=[{"malformed_output_lines": -1}])


def test_reset_turns_every_hostile_knob_off(fake_server):
    plain = post(fake_server, {"model": MODEL, "input": TEXTS}, raw=True)[2]
    fake_server.configure(
        **HOSTILE_ROWS,
        index_fault="missing",
        width_sequence=[2],
        trickle_seconds_per_chunk=0.001,
        trickle_chunk_bytes=4096,
        extra_headers={"x-extra": "1"},
        pad_response_bytes=10,
    )
    assert post(fake_server, {"model": MODEL, "input": TEXTS}, raw=True)[2] != plain
    fake_server.reset()
    _, headers, body = post(fake_server, {"model": MODEL, "input": TEXTS}, raw=True)
    assert "x-extra" not in headers
    assert body == plain  # byte for byte: the shuffle restarts too


def test_expected_vector_tells_whose_vector_a_row_is(fake_server):
    # A fork test's check: every row returned (or cached) is its own text's, and a row
    # that went to the wrong text is recognised as another text's.
    texts = [f"fork text {i}" for i in range(50)]
    rows = as_matrix(embed(fake_server, input=texts))
    table = {expected_vector(MODEL, t).tobytes(): t for t in texts}
    assert len(table) == len(texts)  # distinct texts, distinct vectors
    assert [table[row.tobytes()] for row in rows] == texts
    swapped = rows[[1, 0, *range(2, 50)]]
    assert [table[row.tobytes()] for row in swapped][:2] == [texts[1], texts[0]]


def test_hostile_knobs_given_at_start_are_what_reset_returns_to():
    knobs = {"vector_log10_scale": [5, 6], "p_zero_row": 0.5, "fault_seed": 1}
    startup = {
        **knobs,
        "extra_models": {"w": 8},
        "width_sequence": [8, 2],
        "index_fault": "missing",
    }
    with FakeOpenAIServer(**startup) as server:
        client = make_client(server)

        def rows():
            response = client.embeddings.create(model="w", input=TEXTS, encoding_format="float")
            return wire_rows(response, "float")

        first = rows()
        assert first.shape == (2, 8)  # the last row left out
        assert rows().shape == (2, 2)
        server.configure(width_sequence=None, index_fault=None, vector_log10_scale=None)
        assert rows().shape == (3, 8)
        server.reset()
        np.testing.assert_array_equal(rows(), first)
        expected = [
            expected_wire_row("w", t, native_dim=8, encoding_format="float", **knobs)
            for t in TEXTS[:2]
        ]
        np.testing.assert_array_equal(first, expected)
