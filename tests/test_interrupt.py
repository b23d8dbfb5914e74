"""Ctrl-C stops a job at once: nothing new is sent, what is in flight is still cached, and
the KeyboardInterrupt comes out within the requests' timeout (issue 15, item 7).

A subprocess runs a transform against the fake server (each request takes ``LATENCY``
seconds, the job about 1.5 s) with a cache directory; the test sends SIGINT at a random
moment. The child prints a marker from its SIGINT handler, the moment it sees the
interrupt; the server's request count read right then bounds what was sent before it.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._cache import cache_key
from tests._interrupt_job import (
    BATCH,
    CONCURRENCY,
    DIM,
    LATENCY,
    MODEL,
    N_TEXTS,
    ROOT,
    read_line,
)
from tests.fake_openai import expected_vector

TIMEOUT = 2.0

_CHILD = textwrap.dedent(
    """
    import signal, sys

    from skembed import OpenAIEmbeddingTransformer
    from tests.test_interrupt import texts, params

    def interrupted(signum, frame):
        print("INTERRUPTED", flush=True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    base_url, cache, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    embedder = OpenAIEmbeddingTransformer(base_url=base_url, cache=cache, **params())
    embedder.transform(["warm-up"])
    print("STARTED", flush=True)
    embedder.transform(texts(seed))
    print("DONE", flush=True)
    """
)


def texts(seed):
    rng = random.Random(seed)
    return [f"interrupt {seed} text {i} {rng.randrange(10**9)}" for i in range(N_TEXTS)]


def params():
    return {
        "dimensions": DIM,
        "batch_size": BATCH,
        "max_concurrency": CONCURRENCY,
        "timeout": TIMEOUT,
    }


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctrl_c_stops_sending_keeps_what_was_in_flight_and_exits_in_time(
    fake_server, tmp_path, seed
):
    rng = random.Random(seed)
    fake_server.configure(latency=LATENCY)
    cache = str(tmp_path / "cache")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": fake_server.api_key}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, fake_server.base_url, cache, str(seed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(child.stdout, 60) == "STARTED"
        time.sleep(rng.uniform(0.1, 0.9))  # somewhere in the job's 1.5 s
        interrupted_at = time.monotonic()
        child.send_signal(signal.SIGINT)
        assert read_line(child.stdout, 10) == "INTERRUPTED"
        sent_before = fake_server.stats(texts=False)["requests"]
        _, stderr = child.communicate(timeout=TIMEOUT + 10)
        exited_after = time.monotonic() - interrupted_at
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The interrupt comes out as KeyboardInterrupt, within the requests' own timeout.
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr, stderr[-2000:]
    assert exited_after <= TIMEOUT + 2.0
    stats = fake_server.stats()
    planned = N_TEXTS // BATCH
    # Nothing was sent once the interrupt was seen: at most the requests already on
    # their way to the server (one per thread) arrived after it.
    assert stats["requests"] - sent_before <= CONCURRENCY
    assert 1 < stats["requests"] < 1 + planned  # the warm-up, then part of the job

    # Everything the server answered (and charged) is in the cache, exactly.
    job = texts(seed)
    paid = set(stats["text_counts"]) - {"warm-up"}
    namespace = (
        OpenAIEmbeddingTransformer(base_url=fake_server.base_url, **params())
        ._backend()
        .cache_namespace
    )
    store = EmbeddingCache(cache)
    found, vectors = store.get([cache_key(namespace, text) for text in job], DIM)
    store.close()
    cached = {text for text, hit in zip(job, found, strict=True) if hit}
    assert paid <= cached
    expected = np.stack([expected_vector(MODEL, text, DIM) for text in job])
    np.testing.assert_allclose(vectors[found], expected[found], atol=1e-6)

    # The same job again pays at most once more for what was in flight at the interrupt.
    X = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=cache, **params())
    np.testing.assert_allclose(X.transform(job), expected, atol=1e-6)
    counts = fake_server.stats()["text_counts"]
    paid_twice = [text for text in job if counts.get(text, 0) > 1]
    assert len(paid_twice) <= CONCURRENCY * BATCH
    print(
        f"\nSIGINT after {stats['requests'] - 1} of {planned} requests: "
        f"{stats['requests'] - sent_before} arrived after it, exit in {exited_after:.2f} s, "
        f"{len(paid)} texts charged and cached, {len(paid_twice)} paid twice on the re-run"
    )
    assert set(counts) == {*job, "warm-up"}
