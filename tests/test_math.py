"""Tests of skembed._math: normalisation, blocked exact top-k, radius search, diversity."""

import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skembed import _math
from skembed._math import (
    cosine_radius,
    cosine_topk,
    l2_normalize,
    mean_pairwise_cosine_distance,
    unit_norm_rows,
)


def _clustered(n_samples, n_features, n_clusters, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, n_features))
    X = centres[rng.integers(n_clusters, size=n_samples)]
    X += 0.4 * rng.standard_normal((n_samples, n_features))
    return l2_normalize(X)


def _reference_topk(queries, base, k, exclude_self=False):
    """Float64 brute force: full score matrix and a stable sort."""
    scores = queries.astype(np.float64) @ base.astype(np.float64).T
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return 1.0 - np.take_along_axis(scores, order, axis=1), order


def assert_same_neighbors(queries, base, distances, indices, ref_distances, ref_indices):
    """Equal up to float32 rounding: where indices differ, their distances tie."""
    assert indices.shape == ref_indices.shape
    assert_allclose(distances, ref_distances, atol=2e-6)
    exact = queries.astype(np.float64) @ base.astype(np.float64).T
    ours = np.sort(np.take_along_axis(exact, indices, axis=1), axis=1)
    theirs = np.sort(np.take_along_axis(exact, ref_indices, axis=1), axis=1)
    assert_allclose(ours, theirs, atol=2e-6)
    assert np.mean(indices == ref_indices) > 0.99


def test_l2_normalize_float32_unit_rows():
    X = np.array([[3.0, 4.0], [0.0, -2.0]])
    out = l2_normalize(X)
    assert out.dtype == np.float32
    assert_allclose(out, [[0.6, 0.8], [0.0, -1.0]])
    assert_array_equal(X, [[3.0, 4.0], [0.0, -2.0]])  # input untouched


def test_l2_normalize_in_place_only_when_allowed():
    X = np.array([[3.0, 4.0]], dtype=np.float32)
    assert l2_normalize(X, copy=False) is X
    assert_allclose(X, [[0.6, 0.8]])
    Y = np.array([[3.0, 4.0]], dtype=np.float32)
    Y.flags.writeable = False
    assert l2_normalize(Y, copy=False) is not Y


def test_l2_normalize_names_zero_rows():
    X = np.ones((5, 3))
    X[[1, 3]] = 0
    with pytest.raises(ValueError, match=r"2 row\(s\) with zero norm \(row index 1, 3\)"):
        l2_normalize(X)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_rows_checked_any_magnitude_and_the_rows_it_refuses(seed, dtype):
    # Rows of random magnitude 1e-300..1e300 (cast to ``dtype``, as a server would send
    # them), with zero and non-finite rows: every row is returned unit-norm in its own
    # direction, or refused with its reason, and never returned as zeros or NaN.
    rng = np.random.default_rng(seed)
    n, width = 200, int(rng.integers(1, 70))
    unit = rng.standard_normal((n, width))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    with np.errstate(over="ignore", under="ignore"):
        X = (unit * 10.0 ** rng.uniform(-300, 300, size=(n, 1))).astype(dtype)
    kind = rng.choice(["scaled", "zero", "nan", "inf"], size=n, p=[0.7, 0.1, 0.1, 0.1])
    X[kind == "zero"] = 0
    X[kind == "nan", 0] = np.nan
    X[kind == "inf", -1] = -np.inf
    out, refused = _math.normalize_rows_checked(X)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    for row in range(n):
        wire = X[row].astype(np.float64)
        if not np.isfinite(wire).all():
            assert refused[row].startswith("not finite")
        elif not wire.any():
            assert refused[row] == "all zeros"
        elif row in refused:
            # Only a row whose norm is below tiny * sqrt(width) is too small.
            largest = np.abs(wire).max()
            norm = largest * np.linalg.norm(wire / largest)
            assert norm < np.finfo(dtype).tiny * np.sqrt(width), refused[row]
            assert refused[row].startswith("too small")
        else:
            assert_allclose(np.linalg.norm(out[row].astype(np.float64)), 1.0, atol=1e-6)
            # Its own direction: the direction of what came, to float32 precision.
            largest = np.abs(wire).max()
            direction = (wire / largest) / np.linalg.norm(wire / largest)
            assert_allclose(out[row], direction, atol=1e-6)
        if row in refused:
            assert not out[row].any()
    # Rows of ordinary magnitude come out exactly as normalize_rows gives them.
    plain = np.flatnonzero((kind == "scaled") & (np.abs(X).max(axis=1) > 1e-10))
    plain = plain[np.abs(X[plain]).max(axis=1) < 1e10]
    assert_array_equal(out[plain], _math.normalize_rows(X[plain].astype(np.float32)))


def test_unit_norm_rows_copies_only_when_needed():
    unit = l2_normalize(np.random.default_rng(0).standard_normal((10, 4)))
    assert unit_norm_rows(unit) is unit
    raw = 3 * unit
    out = unit_norm_rows(raw)
    assert out is not raw
    assert_allclose(raw, 3 * unit)
    assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-6)
    # A float64 input is converted (a copy), then normalised in that copy.
    assert unit_norm_rows(raw.astype(np.float64)).dtype == np.float32


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("working_memory", [None, 0.5])
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_cosine_topk_matches_brute_force(monkeypatch, n_threads, working_memory, data):
    # Small data, but take the threaded, sharded path anyway.
    monkeypatch.setattr(_math, "_MIN_PARALLEL_FLOPS", 0)
    monkeypatch.setattr(_math, "_BASE_BLOCK", 256)
    if data == "random":
        X = l2_normalize(np.random.default_rng(1).standard_normal((3100, 24)))
    else:
        X = _clustered(3100, 24, n_clusters=12, seed=1)
    queries, base = X[:100], X[100:]
    distances, indices = cosine_topk(
        queries, base, 7, n_threads=n_threads, working_memory=working_memory
    )
    assert distances.dtype == np.float32
    assert indices.dtype == np.int64
    assert np.all(np.diff(distances, axis=1) >= 0)
    assert_same_neighbors(queries, base, distances, indices, *_reference_topk(queries, base, 7))


@pytest.mark.parametrize("n_threads", [1, 2])
def test_cosine_topk_exclude_self(monkeypatch, n_threads):
    monkeypatch.setattr(_math, "_MIN_PARALLEL_FLOPS", 0)
    monkeypatch.setattr(_math, "_BASE_BLOCK", 128)
    monkeypatch.setattr(_math, "_QUERY_BLOCK", 100)
    X = _clustered(1000, 16, n_clusters=5, seed=2)
    distances, indices = cosine_topk(X, X, 5, exclude_self=True, n_threads=n_threads)
    assert not np.any(indices == np.arange(1000)[:, None])
    assert_same_neighbors(X, X, distances, indices, *_reference_topk(X, X, 5, exclude_self=True))


def test_cosine_topk_keeps_duplicates_of_self_and_orders_ties_by_index():
    base = l2_normalize([[1, 0], [1, 0], [0, 1], [1, 0]])
    distances, indices = cosine_topk(base, base, 2, exclude_self=True)
    assert_array_equal(indices[0], [1, 3])
    assert_array_equal(indices[1], [0, 3])
    assert_allclose(distances[0], [0, 0], atol=1e-7)
    _, indices = cosine_topk(base[:1], base, 3)
    assert_array_equal(indices, [[0, 1, 3]])


@pytest.mark.parametrize(("k", "exclude_self"), [(0, False), (5, False), (4, True)])
def test_cosine_topk_rejects_bad_k(k, exclude_self):
    X = l2_normalize(np.eye(4))
    with pytest.raises(ValueError, match="k must be in"):
        cosine_topk(X, X, k, exclude_self=exclude_self)


def test_block_shape_respects_working_memory():
    for working_memory in (1, 4, 64):
        q, b = _math._block_shape(10_000, 1_000_000, 256, 2, working_memory)
        assert 2 * _math._thread_bytes(q, b, 256) <= working_memory * 2**20
    assert _math._block_shape(10, 50, 8, 2, None) == (10, 50)


@pytest.mark.parametrize("sort_results", [False, True])
def test_cosine_radius_matches_brute_force(sort_results):
    X = _clustered(700, 12, n_clusters=6, seed=3)
    queries, base = X[:40], X[40:]
    distances, indices = cosine_radius(
        queries, base, 0.2, sort_results=sort_results, working_memory=0.05
    )
    exact = 1.0 - queries.astype(np.float64) @ base.astype(np.float64).T
    assert len(indices) == 40
    for row, (dist, idx) in enumerate(zip(distances, indices, strict=True)):
        clear = np.flatnonzero(exact[row] <= 0.2 - 1e-5)
        assert set(clear) <= set(idx)
        assert np.all(exact[row, idx] <= 0.2 + 1e-5)
        assert_allclose(dist, exact[row, idx], atol=2e-6)
        if sort_results:
            assert np.all(np.diff(dist) >= 0)
        else:
            assert np.all(np.diff(idx) > 0)
    assert sum(map(len, indices)) > 40  # the radius is wide enough to find neighbours


def test_cosine_radius_exclude_self():
    X = l2_normalize([[1, 0], [1, 0.01], [0, 1]])
    _, indices = cosine_radius(X, X, 0.1, exclude_self=True)
    assert [list(i) for i in indices] == [[1], [0], []]


def test_mean_pairwise_cosine_distance_matches_pairs():
    X = _clustered(300, 10, n_clusters=3, seed=4)
    X64 = X.astype(np.float64)
    distances = 1.0 - X64 @ X64.T
    expected = distances[~np.eye(300, dtype=bool)].mean()
    assert mean_pairwise_cosine_distance(X, chunk_rows=64) == pytest.approx(expected, abs=1e-6)


def test_mean_pairwise_cosine_distance_extremes_and_errors():
    same = l2_normalize(np.ones((4, 3)))
    assert mean_pairwise_cosine_distance(same) == pytest.approx(0, abs=1e-6)
    opposite = l2_normalize([[1, 0], [-1, 0]])
    assert mean_pairwise_cosine_distance(opposite) == pytest.approx(2)
    with pytest.raises(ValueError, match="At least 2 rows"):
        mean_pairwise_cosine_distance(same[:1])


def test_math_imports_no_sklearn():
    code = (
        "import sys, skembed._math; "
        "bad = [m for m in sys.modules if m.startswith('sklearn')]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
