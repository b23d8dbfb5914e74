"""The local model's thread policy (skembed/backends/_threads.py) and its use.

No timing here: throughput is measured by ``benchmarks/bench_local.py --contended``.
"""

from __future__ import annotations

import os
import sys
import warnings

import joblib
import numpy as np
import pytest

from skembed.backends import _threads
from skembed.backends._threads import (
    THREAD_LIMIT_VARIABLES,
    available_cpus,
    inference_threads,
    onnx_session_options,
)

ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def cpus(monkeypatch):
    """Pretend this process may run on ``n`` CPUs, without a cgroup quota."""

    def set_cpus(n):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)
        monkeypatch.setattr(_threads, "_cgroup_quota", lambda: None)

    return set_cpus


@pytest.mark.parametrize("seed", range(3))
def test_an_explicit_count_is_returned_whatever_the_environment(seed, cpus):
    rng = np.random.default_rng(seed)
    cpus(int(rng.integers(1, 64)))
    for _ in range(20):
        n = int(rng.integers(1, 256))
        environ = {name: str(int(rng.integers(1, 8))) for name in THREAD_LIMIT_VARIABLES}
        assert inference_threads(n, environ=environ) == n


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_a_bad_explicit_count_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="n_threads"):
        inference_threads(bad)


@pytest.mark.parametrize("seed", range(3))
def test_without_a_limit_the_count_is_the_affinity_mask(seed, cpus):
    rng = np.random.default_rng(seed)
    for _ in range(10):
        n = int(rng.integers(1, 128))
        cpus(n)
        assert available_cpus() == n
        assert inference_threads(None, environ={}) == n


@pytest.mark.parametrize("seed", range(3))
def test_per_cpu_multiplies_the_cpus_but_never_a_limit(seed, cpus):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n_cpus, per_cpu, limit = (int(v) for v in rng.integers(1, 32, size=3))
        cpus(n_cpus)
        assert inference_threads(None, environ={}, per_cpu=per_cpu) == per_cpu * n_cpus
        name = str(rng.choice(THREAD_LIMIT_VARIABLES))
        limited = inference_threads(None, environ={name: str(limit)}, per_cpu=per_cpu)
        assert limited == min(n_cpus, limit)
        assert inference_threads(limit, environ={}, per_cpu=per_cpu) == limit


def test_the_local_model_runs_two_batches_per_cpu_unless_limited(cpus, monkeypatch):
    from skembed.backends import _local
    from tests._backends import local_backend

    seen = []

    def recording(function, items, n_threads):
        seen.append(n_threads)
        return _threads.map_in_threads(function, items, n_threads)

    monkeypatch.setattr(_local, "map_in_threads", recording)
    for name in THREAD_LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    cpus(2)
    texts = [f"review number {i}" for i in range(9)]
    default = local_backend().embed(texts)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as in a joblib worker of n_jobs=2
    limited = local_backend().embed(texts)
    assert seen == [_threads.RUNS_PER_CPU * 2, 1]
    np.testing.assert_allclose(default, limited, atol=1e-5)


def test_the_real_affinity_mask_bounds_the_default():
    assert 1 <= inference_threads(None, environ={}) <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("seed", range(3))
def test_a_limit_variable_lowers_the_count_but_never_raises_it(seed, cpus):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n_cpus, limit = int(rng.integers(1, 32)), int(rng.integers(1, 64))
        cpus(n_cpus)
        name = str(rng.choice(THREAD_LIMIT_VARIABLES))
        assert inference_threads(None, environ={name: str(limit)}) == min(n_cpus, limit)


def test_the_variables_are_read_in_order_and_omp_may_list_levels(cpus):
    cpus(16)
    environ = {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"}
    assert inference_threads(None, environ=environ) == 3
    del environ["OMP_NUM_THREADS"]
    assert inference_threads(None, environ=environ) == 2
    assert inference_threads(None, environ={"OMP_NUM_THREADS": "4,2"}) == 4
    # os.environ is read when no mapping is given.
    with pytest.MonkeyPatch.context() as mp:
        for name in THREAD_LIMIT_VARIABLES:
            mp.delenv(name, raising=False)
        mp.setenv("OPENBLAS_NUM_THREADS", "5")
        assert inference_threads(None) == 5


@pytest.mark.parametrize("bad", ["abc", "0", "-3", "2.5", "auto", ",4"])
def test_a_bad_limit_is_ignored_with_a_warning_naming_it(bad, cpus):
    cpus(6)
    with pytest.warns(RuntimeWarning, match=rf"OMP_NUM_THREADS='{bad}'.*6 CPU"):
        assert inference_threads(None, environ={"OMP_NUM_THREADS": bad}) == 6
    # The next valid variable is the limit then.
    with pytest.warns(RuntimeWarning, match="OMP_NUM_THREADS"):
        assert (
            inference_threads(None, environ={"OMP_NUM_THREADS": bad, "MKL_NUM_THREADS": "2"}) == 2
        )


def test_a_blank_limit_is_unset_silently(cpus):
    cpus(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert inference_threads(None, environ={"OMP_NUM_THREADS": "  "}) == 3


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        ("150000 100000\n", None, 2),
        ("50000 100000\n", None, 1),
        ("max 100000\n", None, None),
        (None, ("300000", "100000"), 3),
        (None, ("-1", "100000"), None),
        ("garbage\n", None, None),
        (None, None, None),
    ],
)
def test_a_cgroup_quota_bounds_the_cpus(v2, v1, expected, tmp_path, monkeypatch):
    paths = {"v2": tmp_path / "cpu.max", "q": tmp_path / "quota", "p": tmp_path / "period"}
    if v2 is not None:
        paths["v2"].write_text(v2)
    if v1 is not None:
        paths["q"].write_text(v1[0])
        paths["p"].write_text(v1[1])
    monkeypatch.setattr(_threads, "_CGROUP_V2_CPU_MAX", str(paths["v2"]))
    monkeypatch.setattr(_threads, "_CGROUP_V1_QUOTA", str(paths["q"]))
    monkeypatch.setattr(_threads, "_CGROUP_V1_PERIOD", str(paths["p"]))
    assert _threads._cgroup_quota() == expected
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert available_cpus() == (8 if expected is None else expected)


@pytest.mark.parametrize("n_jobs", [2, 3])
def test_joblib_workers_get_their_share_of_the_cpus(n_jobs, monkeypatch):
    # Real loky workers: joblib sets OMP_NUM_THREADS etc. in them (when the parent has
    # none), to cpu_count // n_jobs or to parallel_config's inner_max_num_threads.
    for name in THREAD_LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    probe = joblib.delayed(inference_threads)
    with joblib.parallel_config(backend="loky", n_jobs=n_jobs):
        limited = joblib.Parallel()(probe(None) for _ in range(n_jobs))
        free = joblib.Parallel()(probe(None, environ={}) for _ in range(n_jobs))
    share = max(1, joblib.cpu_count() // n_jobs)
    assert limited == [min(f, share) for f in free]
    with joblib.parallel_config(backend="loky", n_jobs=n_jobs, inner_max_num_threads=2):
        limited = joblib.Parallel()(probe(None) for _ in range(n_jobs))
    assert limited == [min(f, 2) for f in free]


def test_session_options_do_not_spin():
    for n in (1, 2, 5):
        options = onnx_session_options(ort, n)
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
        assert options.intra_op_num_threads == n
        assert options.inter_op_num_threads == 1
        assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


def test_the_local_model_session_runs_on_its_callers_thread(monkeypatch):
    from skembed.backends import _local

    monkeypatch.setattr(_local, "_loaded", {})
    options = _local._get_model().session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert _local._get_model() is _local._get_model()  # one session per process


def _count_concurrent_runs(monkeypatch, module):
    """Wrap ``module._run`` to record how many runs overlap; return the record."""
    import threading
    import time

    seen = {"now": 0, "most": 0, "threads": set()}
    lock = threading.Lock()
    run = module._run

    def counting_run(*args):
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
            seen["threads"].add(threading.get_ident())
        try:
            time.sleep(0.02)  # long enough for the other threads to start theirs
            return run(*args)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(module, "_run", counting_run)
    return seen


@pytest.mark.parametrize(
    ("limit", "n_threads", "expected"), [("1", None, 1), ("3", None, 3), ("1", 2, 2)]
)
def test_the_local_model_runs_as_many_batches_at_once_as_the_policy_says(
    monkeypatch, cpus, limit, n_threads, expected
):
    from skembed.backends import _local
    from tests._backends import local_backend

    cpus(4)
    monkeypatch.setenv("OMP_NUM_THREADS", limit)
    seen = _count_concurrent_runs(monkeypatch, _local)
    texts = [f"sentence {i} about {'cats' if i % 2 else 'markets'}" for i in range(40)]
    vectors = local_backend(n_threads=n_threads, batch_size=4).embed(texts)
    assert seen["most"] == expected
    assert len(seen["threads"]) == expected
    # The vectors do not depend on how many batches ran at once.
    single = local_backend(n_threads=1, batch_size=7).embed(texts)
    np.testing.assert_allclose(vectors, single, atol=1e-5)


def test_a_small_call_is_split_so_that_every_thread_has_a_batch(monkeypatch, cpus):
    from skembed.backends import _local
    from tests._backends import local_backend

    cpus(2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for name in THREAD_LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    seen = _count_concurrent_runs(monkeypatch, _local)
    n_threads = _threads.RUNS_PER_CPU * 2
    # Far fewer texts than one batch holds, as many per thread.
    local_backend(batch_size=64).embed([f"text {i}" for i in range(5 * n_threads)])
    assert seen["most"] == n_threads


@pytest.mark.parametrize("seed", range(4))
def test_map_in_threads_keeps_order_and_bounds_what_runs_ahead(seed):
    import threading
    import time

    rng = np.random.default_rng(seed)
    n_threads = int(rng.integers(1, 5))
    n_items = int(rng.integers(0, 40))
    delays = rng.uniform(0, 0.004, size=n_items)
    started = []
    lock = threading.Lock()

    def work(i):
        with lock:
            started.append(i)
        time.sleep(delays[i])
        return i * i

    before = threading.active_count()
    results = _threads.map_in_threads(work, range(n_items), n_threads)
    for consumed, value in enumerate(results):
        assert value == consumed * consumed
        with lock:  # never more than n_threads + 1 items beyond the one consumed
            assert len(started) <= consumed + 1 + n_threads
    assert sorted(started) == list(range(n_items))
    assert threading.active_count() == before  # no thread outlives the call


@pytest.mark.parametrize("seed", range(4))
def test_map_in_threads_raises_in_order_and_stops_its_threads(seed):
    import threading

    rng = np.random.default_rng(seed)
    n_threads = int(rng.integers(2, 5))
    n_items = int(rng.integers(5, 30))
    bad = int(rng.integers(0, n_items))
    started = []

    def work(i):
        started.append(i)
        if i == bad:
            raise ValueError(f"item {i}")
        return i

    before = threading.active_count()
    got = []
    with pytest.raises(ValueError, match=f"item {bad}$"):
        for value in _threads.map_in_threads(work, range(n_items), n_threads):
            got.append(value)
    assert got == list(range(bad))  # every item before the bad one, none after
    assert len(started) <= bad + 2 + n_threads  # the rest was never started
    assert threading.active_count() == before


def test_map_in_threads_closed_early_cancels_the_rest():
    import threading
    from contextlib import closing

    started = []
    before = threading.active_count()
    with closing(_threads.map_in_threads(started.append, range(1000), 3)) as results:
        next(results)
    assert len(started) <= 5
    assert threading.active_count() == before


def _min_cosine_to_reference(reference):
    def score(estimator, X, y):
        vectors = estimator[:-1].transform(X)
        expected = np.stack([reference[text] for text in X])
        return float(np.min(np.sum(vectors * expected, axis=1)))

    return score


@pytest.mark.timeout(900)  # starting two workers and their models takes minutes on a loaded machine
def test_grid_search_with_two_workers_gives_the_same_vectors():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline

    from skembed import LocalEmbeddingTransformer
    from skembed.datasets import load_clothing_reviews

    reviews = load_clothing_reviews(n_samples=60, random_state=1).dropna(subset=["review_text"])
    texts, labels = reviews["review_text"].tolist(), reviews["recommended_ind"].to_numpy()
    reference = dict(
        zip(texts, LocalEmbeddingTransformer(cache=None).fit_transform(texts), strict=True)
    )
    # The scorer is defined here: loky sends it to the workers by value with cloudpickle.
    cloudpickle = pytest.importorskip("cloudpickle")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        results = {}
        for n_jobs in (1, 2):
            search = GridSearchCV(
                make_pipeline(
                    LocalEmbeddingTransformer(cache=None), LogisticRegression(max_iter=1000)
                ),
                {"logisticregression__C": [1.0]},  # two folds: one task per worker
                cv=StratifiedKFold(2, shuffle=True, random_state=0),
                scoring={"accuracy": "accuracy", "cosine": _min_cosine_to_reference(reference)},
                refit=False,
                n_jobs=n_jobs,
            ).fit(texts, labels)
            results[n_jobs] = search.cv_results_
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    for n_jobs, result in results.items():
        cosines = np.concatenate([result[f"split{i}_test_cosine"] for i in range(2)])
        assert cosines.min() > 0.9999, (n_jobs, cosines)
    for i in range(2):
        np.testing.assert_array_equal(
            results[1][f"split{i}_test_accuracy"], results[2][f"split{i}_test_accuracy"]
        )
