"""A Ctrl-C at any moment of a job leaves no thread of skembed's behind (issue 19).

A KeyboardInterrupt raised inside ``threading.Condition.__enter__`` (behind
``concurrent.futures.wait``, ``Future.result``, ``Event.set``...) leaves its lock held by
the main thread; the worker that needs it next waits forever, and so does the
interpreter's exit. CI met it once in about 270 subprocess runs; in-process, with SIGINT
sent at random moments, it showed within a hundred calls before skembed took Ctrl-C at
safe points only (``skembed.backends._signals``).

The property, over random moments, sizes, batch sizes and concurrency, several seeds:
every call either ends or raises ``KeyboardInterrupt``; a few seconds later no thread
of skembed is left; the SIGINT handler in place before the call is in place after it;
a call that ended returned its texts' own vectors.
"""

import os
import random
import signal
import threading
import time

import numpy as np
import pytest

from skembed import OpenAIEmbeddingTransformer
from skembed.backends._signals import DeferredInterrupts
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIM = 8
N_TRIALS = 60


def _skembed_threads():
    return [t for t in threading.enumerate() if t.name.startswith("skembed")]


def _wait_for_no_skembed_threads(seconds):
    deadline = time.monotonic() + seconds
    while _skembed_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return _skembed_threads()


def _call_with_sigint_after(delay, armed, function, *args):
    """``function(*args)`` with a SIGINT sent to this process ``delay`` s after it starts, as a
    terminal sends it (from outside the main thread); ``None`` if it was interrupted."""
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    armed.set()
    timer.start()
    try:
        return function(*args)
    except KeyboardInterrupt:
        return None
    finally:
        armed.clear()
        timer.cancel()
        timer.join()


def _assert_nothing_left_behind(trial, handler):
    left = _wait_for_no_skembed_threads(5.0)
    assert not left, f"trial {trial}: {len(left)} skembed threads left after Ctrl-C"
    assert signal.getsignal(signal.SIGINT) is handler


@pytest.fixture
def sigint_when_armed():
    """A SIGINT handler raising KeyboardInterrupt only while ``armed`` is set."""
    armed = threading.Event()

    def handler(signum, frame):
        if armed.is_set():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield armed, handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_ctrl_c_at_any_moment_leaves_no_thread_behind(fake_server, sigint_when_armed, seed):
    armed, handler = sigint_when_armed
    rng = random.Random(seed)
    fake_server.configure(latency=0.002)
    n_interrupted = 0
    for trial in range(N_TRIALS):
        texts = [f"ctrl-c {seed} {trial} {i}" for i in range(rng.randrange(50, 400))]
        embedder = OpenAIEmbeddingTransformer(
            base_url=fake_server.base_url,
            cache=None,
            dimensions=DIM,
            batch_size=rng.choice([1, 2, 4, 8]),
            max_concurrency=rng.choice([2, 4, 16]),
        )
        vectors = _call_with_sigint_after(rng.uniform(0.0, 0.25), armed, embedder.transform, texts)
        _assert_nothing_left_behind(trial, handler)
        if vectors is None:
            n_interrupted += 1
        else:
            expected = np.stack([expected_vector(MODEL, text, DIM) for text in texts])
            np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert n_interrupted >= N_TRIALS // 4  # the moments do fall inside the calls


def test_deferred_interrupts_deliver_at_check_and_restore_the_handler():
    calls = []

    def handler(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        with DeferredInterrupts() as interrupts:
            assert signal.getsignal(signal.SIGINT) is not handler
            signal.raise_signal(signal.SIGINT)
            assert calls == []  # recorded, not delivered
            interrupts.check()
            assert calls == [signal.SIGINT]
            interrupts.check()
            assert calls == [signal.SIGINT]  # once
            signal.raise_signal(signal.SIGINT)
        assert calls == [signal.SIGINT] * 2  # still pending at the exit: delivered there
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_deferred_interrupts_raise_keyboard_interrupt_under_the_default_handler():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), DeferredInterrupts() as interrupts:
            signal.raise_signal(signal.SIGINT)
            interrupts.check()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with DeferredInterrupts() as interrupts:  # nothing arrived: nothing raised
            interrupts.check()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_deferred_interrupts_change_nothing_outside_the_main_thread():
    seen = []

    def run():
        before = signal.getsignal(signal.SIGINT)
        with DeferredInterrupts() as interrupts:
            seen.append(signal.getsignal(signal.SIGINT) is before)
            interrupts.check()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [True]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
def test_ctrl_c_in_the_local_model_leaves_no_thread_behind(sigint_when_armed, seed):
    pytest.importorskip("onnxruntime")
    from skembed import LocalEmbeddingTransformer

    armed, handler = sigint_when_armed
    rng = random.Random(seed)
    embedder = LocalEmbeddingTransformer(cache=None, batch_size=8, n_threads=4)
    embedder.transform(["warm-up"])  # the model loads outside the trials
    n_interrupted = 0
    for trial in range(15):
        texts = [f"local ctrl-c {seed} {trial} {i} " * 8 for i in range(rng.randrange(40, 160))]
        vectors = _call_with_sigint_after(rng.uniform(0.0, 0.3), armed, embedder.transform, texts)
        _assert_nothing_left_behind(trial, handler)
        if vectors is None:
            n_interrupted += 1
        else:  # its texts' own vectors, as a call nobody interrupts computes them
            reference = LocalEmbeddingTransformer(cache=None, n_threads=1).transform(texts)
            np.testing.assert_allclose(vectors, reference, atol=1e-5)
    assert n_interrupted >= 3
