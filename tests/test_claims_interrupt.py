"""Ctrl-C and claims: an interrupted worker lets go of its claims at once (issue 19).

Claims lapse after ``CLAIM_SECONDS`` when their owner dies; a worker that is merely
interrupted (``KeyboardInterrupt``) must release them itself, so that the next worker on
the same texts proceeds at once instead of waiting out the expiry. The promises, as
properties (random interruption points, several seeds, both stores):

- after the interrupt, no claim of the worker is left: another owner takes every text;
- a follow-up worker finishes well within ``CLAIM_SECONDS``;
- everything the server charged before the interrupt is in the cache;
- the follow-up pays again only what was in flight at the interrupt;
- every cached vector is its own text's.

Three ways in: SIGINT to a subprocess at a random moment of its fetch (the real
thing); a ``KeyboardInterrupt`` raised at a random call of the job into its claims
or its cache, before or after the call (every window between two statements of the
claim/fetch/release cycle that a signal can fall into, deterministically); and one
raised at a random line of skembed's code in the main thread (a trace function).
"""

import ast
import functools
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer, RedisEmbeddingCache, _embed
from skembed._cache import cache_key
from skembed._cache._base import key_array
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

_CHILD = textwrap.dedent(
    """
    import signal, sys

    from skembed import OpenAIEmbeddingTransformer
    from tests.test_claims_interrupt import make_cache, params, texts

    def interrupted(signum, frame):
        print("INTERRUPTED", flush=True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    base_url, where, prefix, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    embedder = OpenAIEmbeddingTransformer(
        base_url=base_url, cache=make_cache(where, prefix), **params()
    )
    embedder.transform(["warm-up"])
    print("STARTED", flush=True)
    embedder.transform(texts(seed))
    print("DONE", flush=True)
    """
)


def texts(seed):
    rng = random.Random(seed)
    return [f"claims interrupt {seed} text {i} {rng.randrange(10**9)}" for i in range(N_TEXTS)]


def params():
    return {"dimensions": DIM, "batch_size": BATCH, "max_concurrency": CONCURRENCY}


def make_cache(where, prefix):
    """A directory cache (``prefix`` empty) or a Redis one (``where`` a URL)."""
    if prefix:
        return RedisEmbeddingCache(where, prefix=prefix)
    return EmbeddingCache(where)


@pytest.fixture(params=["directory", "redis"])
def store(request, tmp_path):
    """``(where, prefix)`` of a fresh cache of each kind."""
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return server.url(), f"claims-interrupt-{os.getpid()}-{time.time_ns()}"
    return str(tmp_path / "cache"), ""


def namespace_of(fake_server):
    embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, **params())
    return embedder._backend().cache_namespace


def check_after_interrupt(fake_server, cache, job, paid, max_in_flight):
    """The promises, once the interrupted worker is gone; ``paid``: what it was charged."""
    namespace = namespace_of(fake_server)
    keys = key_array([cache_key(namespace, text) for text in job])
    # No claim of the interrupted worker is left: another owner gets every text.
    claims = cache.claims()
    taken = claims.take(keys, "probe", 30.0)
    claims.release(keys, "probe")
    assert taken.all(), f"{int((~taken).sum())} claims still held after the interrupt"
    # Everything it paid for is cached, with its own text's vector.
    found, vectors = cache.get(keys, DIM, count=False)
    cached = {text for text, hit in zip(job, found, strict=True) if hit}
    assert paid <= cached, f"{len(paid - cached)} texts paid for and not cached"
    expected = np.stack([expected_vector(MODEL, text, DIM) for text in job])
    np.testing.assert_allclose(vectors[found], expected[found], atol=1e-6)
    # A follow-up worker proceeds at once (not after the claims' expiry), and pays again
    # only for what was in flight at the interrupt.
    before = dict(fake_server.stats()["text_counts"])
    follow_up = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=cache, **params())
    start = time.monotonic()
    np.testing.assert_allclose(follow_up.transform(job), expected, atol=1e-6)
    seconds = time.monotonic() - start
    assert seconds < _embed.CLAIM_SECONDS / 3, seconds
    counts = fake_server.stats()["text_counts"]
    resent = {t for t in job if counts.get(t, 0) > before.get(t, 0)}
    assert resent.isdisjoint(cached)  # nothing cached is sent again
    paid_twice = {t for t in job if counts.get(t, 0) > 1}
    assert len(paid_twice) <= max_in_flight
    assert set(counts) >= set(job)
    return seconds, len(paid_twice)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigint_releases_the_claims_and_keeps_what_was_paid(fake_server, store, seed):
    rng = random.Random(seed)
    fake_server.configure(latency=LATENCY)
    where, prefix = store
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": fake_server.api_key}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, fake_server.base_url, where, prefix, str(seed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(child.stdout, 60) == "STARTED"
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere in the job's 1.2 s or more
        child.send_signal(signal.SIGINT)
        assert read_line(child.stdout, 10) == "INTERRUPTED"
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr, stderr[-2000:]
    job = texts(seed)
    paid = set(fake_server.stats()["text_counts"]) - {"warm-up"}
    assert len(paid) < len(job)  # interrupted before the end
    cache = make_cache(where, prefix)
    seconds, twice = check_after_interrupt(
        fake_server, cache, job, paid, max_in_flight=CONCURRENCY * BATCH
    )
    cache.close()
    print(f"\n{len(paid)} paid before SIGINT; follow-up {seconds:.2f} s, {twice} paid twice")


class _Interrupting:
    """A claims object that raises KeyboardInterrupt before or after its ``n``-th call."""

    def __init__(self, claims, n, after):
        self.claims = claims
        self.calls = 0
        self.n = n
        self.after = after

    def _call(self, name, *args):
        self.calls += 1
        if self.calls == self.n and not self.after:
            raise KeyboardInterrupt
        result = getattr(self.claims, name)(*args)
        if self.calls == self.n:
            raise KeyboardInterrupt
        return result

    def take(self, *args):
        return self._call("take", *args)

    def renew(self, *args):
        return self._call("renew", *args)

    def release(self, *args):
        return self._call("release", *args)


@pytest.mark.parametrize("seed", range(6))
def test_an_interrupt_at_any_claims_call_leaves_no_claim_behind(
    fake_server, store, monkeypatch, seed
):
    rng = random.Random(seed)
    where, prefix = store
    cache = make_cache(where, prefix)
    job = texts(100 + seed)[: rng.randrange(20, 80)]
    namespace = namespace_of(fake_server)
    # Another worker holds some of the texts for a while, so that the job takes several
    # rounds of claims (its last release makes the job claim the rest).
    theirs = key_array(
        [cache_key(namespace, t) for t in job if rng.random() < 0.5]
        or [cache_key(namespace, job[0])]
    )
    real = cache.claims()
    assert real.take(theirs, "other worker", 30.0).all()
    threading.Timer(rng.uniform(0.05, 0.3), real.release, (theirs, "other worker")).start()
    interrupting = _Interrupting(real, n=rng.randrange(1, 4), after=rng.random() < 0.5)
    embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=cache, **params())
    with monkeypatch.context() as patch:
        patch.setattr(cache, "claims", lambda: interrupting)
        try:
            embedder.transform(job)
        except KeyboardInterrupt:
            pass
        else:  # fewer claims calls than n: nothing to interrupt
            assert interrupting.calls < interrupting.n
    time.sleep(0.35)  # the other worker's claims are released by now
    paid = set(fake_server.stats()["text_counts"])
    # Interrupted in the main thread, the job's threads may finish the request of each.
    check_after_interrupt(fake_server, cache, job, paid, max_in_flight=CONCURRENCY * BATCH)
    cache.close()


class _InterruptAtLine:
    """A trace of this thread that raises ``KeyboardInterrupt`` at the ``n``-th line of
    skembed's code it runs (never, with ``n=0``: it then only counts them).

    This is where a signal lands: between any two statements of the main thread (the
    pool's threads are not traced, and a signal never runs there). A trace function
    that raises is removed, so there is one interrupt. Not on the line of a ``with``:
    a trace sees it again as the block ends normally, where raising would skip the
    ``__exit__`` (a lock left held), which no signal can do there.
    """

    def __init__(self, n=0):
        self.n = n
        self.lines = 0

    def __call__(self, frame, event, arg):
        return self._line if frame.f_code.co_filename.startswith(_SKEMBED) else None

    def _line(self, frame, event, arg):
        if event == "line" and frame.f_lineno not in _with_lines(frame.f_code.co_filename):
            self.lines += 1
            if self.lines == self.n:
                raise KeyboardInterrupt
        return self._line

    def __enter__(self):
        sys.settrace(self)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)


_SKEMBED = str(ROOT / "skembed")


@functools.cache
def _with_lines(filename):
    """The lines of the ``with`` statements' headers in ``filename``."""
    tree = ast.parse(Path(filename).read_text())
    return frozenset(
        line
        for node in ast.walk(tree)
        if isinstance(node, ast.With)
        for line in range(node.lineno, node.body[0].lineno)
    )


@pytest.mark.parametrize("seed", range(30))
def test_an_interrupt_at_any_line_keeps_what_was_paid(fake_server, store, seed):
    rng = random.Random(seed)
    fake_server.configure(latency=0.02)
    where, prefix = store
    cache = make_cache(where, prefix)
    embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=cache, **params())
    embedder.transform(["warm-up"])  # the client and the width: not part of what is counted
    n_texts = rng.randrange(10, 100)
    with _InterruptAtLine() as counting:  # the lines a job of that size runs
        embedder.transform(texts(300 + seed)[:n_texts])
    job = texts(400 + seed)[:n_texts]
    interrupt = _InterruptAtLine(rng.randrange(1, counting.lines))
    try:
        with interrupt:
            embedder.transform(job)
    except KeyboardInterrupt:
        pass
    else:  # the job ran fewer lines than its twin (fewer wake-ups): not interrupted
        assert interrupt.lines < interrupt.n
    paid = set(fake_server.stats()["text_counts"]) & set(job)
    check_after_interrupt(fake_server, cache, job, paid, max_in_flight=CONCURRENCY * BATCH)
    cache.close()
