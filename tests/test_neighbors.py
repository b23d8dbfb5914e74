"""Tests of skembed.neighbors: CosineNearestNeighbors and cosine_diversity."""

import pickle
import sys
import tracemalloc

import joblib
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.metrics import roc_auc_score
from sklearn.metrics.pairwise import cosine_distances, cosine_similarity
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skembed.neighbors import CosineNearestNeighbors, cosine_diversity
from tests.test_math import assert_same_neighbors


def _clustered(n_samples, n_features, n_clusters, seed, spread=0.4):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, n_features))
    X = centres[rng.integers(n_clusters, size=n_samples)]
    return X + spread * rng.standard_normal((n_samples, n_features))


def _data(kind, n_samples=600, n_features=20, seed=0):
    if kind == "random":
        return np.random.default_rng(seed).standard_normal((n_samples, n_features))
    return _clustered(n_samples, n_features, n_clusters=8, seed=seed)


def _unit32(X):
    X = np.asarray(X, dtype=np.float64)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_kneighbors_matches_sklearn(kind):
    # Rows of any norm, float64: both estimators normalise.
    X = 3.0 * _data(kind)
    fit, queries = X[:500], X[500:]
    ours = CosineNearestNeighbors(n_neighbors=6).fit(fit)
    ref = NearestNeighbors(n_neighbors=6, metric="cosine", algorithm="brute").fit(fit)
    distances, indices = ours.kneighbors(queries)
    assert distances.dtype == np.float32
    expected = ref.kneighbors(queries)
    assert_same_neighbors(_unit32(queries), _unit32(fit), distances, indices, *expected)


@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_kneighbors_on_training_data_matches_sklearn(kind):
    X = _data(kind, n_samples=400)
    ours = CosineNearestNeighbors(n_neighbors=4).fit(X)
    ref = NearestNeighbors(n_neighbors=4, metric="cosine", algorithm="brute").fit(X)
    distances, indices = ours.kneighbors()
    assert not np.any(indices == np.arange(400)[:, None])  # no point is its own neighbour
    assert_same_neighbors(_unit32(X), _unit32(X), distances, indices, *ref.kneighbors())


def test_kneighbors_none_returns_duplicates_but_not_self():
    X = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    nn = CosineNearestNeighbors(n_neighbors=1).fit(X)
    distances, indices = nn.kneighbors()
    assert_array_equal(indices.ravel(), [1, 0, 3, 2])
    assert_allclose(distances[:2], 0, atol=1e-7)
    # Asking with the same points as X (not None) finds each point itself.
    assert_array_equal(nn.kneighbors(X[2:], return_distance=False).ravel(), [2, 3])


def test_kneighbors_n_neighbors_checks():
    X = _data("random", n_samples=10)
    nn = CosineNearestNeighbors(n_neighbors=3).fit(X)
    assert nn.kneighbors(X[:2], n_neighbors=10)[1].shape == (2, 10)
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit, but n_neighbors = 11"):
        nn.kneighbors(X[:2], n_neighbors=11)
    with pytest.raises(ValueError, match="n_neighbors < n_samples_fit, but n_neighbors = 10"):
        nn.kneighbors(n_neighbors=10)
    with pytest.raises(ValueError, match="n_samples_fit = 10"):
        CosineNearestNeighbors(n_neighbors=11).fit(X).kneighbors(X)
    with pytest.raises(ValueError, match="Expected n_neighbors > 0"):
        nn.kneighbors(X, n_neighbors=0)
    with pytest.raises(TypeError, match="n_neighbors must be an int"):
        nn.kneighbors(X, n_neighbors=2.0)


ALGORITHMS_AND_STORAGES = [
    (algorithm, storage)
    for algorithm in ("brute", "hnsw")
    for storage in ("float32", "float16", "int8")
]


@pytest.mark.parametrize(("algorithm", "storage"), ALGORITHMS_AND_STORAGES)
def test_zero_rows_have_cosine_zero_to_everything(algorithm, storage):
    # A blank text embedded with on_invalid_text="zero" gives an all-zero row: cosine 0
    # (distance 1) to every point, as sklearn's cosine_similarity defines it, not an error.
    if algorithm == "hnsw":
        pytest.importorskip("usearch")
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n_fit, n_query, n_features = rng.integers(4, 40), rng.integers(1, 20), rng.integers(2, 9)
        X = rng.standard_normal((n_fit, n_features))
        Q = rng.standard_normal((n_query, n_features))
        X[rng.random(n_fit) < 0.3] = 0
        Q[rng.random(n_query) < 0.3] = 0
        k = int(rng.integers(1, n_fit))
        nn = CosineNearestNeighbors(n_neighbors=k, algorithm=algorithm, storage=storage).fit(X)
        for queries, exclude_self in ((Q, False), (None, True)):
            expected = 1 - cosine_similarity(X if queries is None else queries, X)
            if exclude_self:
                np.fill_diagonal(expected, np.inf)
            distances, indices = nn.kneighbors(queries)
            assert np.isfinite(distances).all()
            # Each returned distance is the true one, and the k best are returned.
            np.testing.assert_allclose(
                distances, np.take_along_axis(expected, indices, axis=1), atol=1e-5
            )
            if algorithm == "brute" and storage == "float32":
                np.testing.assert_allclose(distances, np.sort(expected, axis=1)[:, :k], atol=1e-5)
            zero_queries = ~(X if queries is None else queries).any(axis=1)
            np.testing.assert_allclose(distances[zero_queries], 1.0, atol=1e-6)
        within, _ = nn.radius_neighbors(Q, radius=1.0)
        for row, found in zip(Q, within, strict=True):
            if not row.any():
                assert len(found) == n_fit and np.allclose(found, 1.0, atol=1e-6)
        assert np.isfinite(nn.score_samples(Q)).all()


def test_unit_norm_float32_input_is_not_copied():
    X = _unit32(_data("random"))
    nn = CosineNearestNeighbors().fit(X)
    assert np.shares_memory(nn._fit_X, X)
    raw = np.array(X * 2)
    CosineNearestNeighbors().fit(raw)
    assert_allclose(raw, X * 2)  # not normalised in place
    frame = pd.DataFrame(raw)
    CosineNearestNeighbors().fit(frame)
    assert_allclose(frame.to_numpy(), X * 2)
    # A float64 array is converted, and the conversion normalised without another copy.
    nn = CosineNearestNeighbors().fit(raw.astype(np.float64))
    assert_allclose(np.linalg.norm(nn._fit_X, axis=1), 1, rtol=1e-6)


def test_fitted_attributes():
    X = _data("random", n_samples=30, n_features=7)
    nn = CosineNearestNeighbors().fit(X)
    assert nn.n_samples_fit_ == 30
    assert nn.n_features_in_ == 7


@pytest.mark.parametrize("mode", ["connectivity", "distance"])
@pytest.mark.parametrize("queries", [None, "new"])
def test_kneighbors_graph_matches_sklearn(mode, queries):
    X = _data("clustered", n_samples=120)
    Q = None if queries is None else _data("clustered", n_samples=15, seed=1)
    ours = CosineNearestNeighbors(n_neighbors=3).fit(X).kneighbors_graph(Q, mode=mode)
    ref = NearestNeighbors(n_neighbors=3, metric="cosine").fit(X).kneighbors_graph(Q, mode=mode)
    n_queries = 120 if Q is None else 15
    assert ours.shape == ref.shape == (n_queries, 120)
    assert ours.nnz == n_queries * 3
    assert_allclose(ours.toarray(), ref.toarray(), atol=2e-6)


def test_graph_rejects_unknown_mode():
    nn = CosineNearestNeighbors(n_neighbors=1).fit(np.eye(3))
    with pytest.raises(ValueError, match="Unsupported mode"):
        nn.kneighbors_graph(mode="weights")
    with pytest.raises(ValueError, match="Unsupported mode"):
        nn.radius_neighbors_graph(mode="weights")


@pytest.mark.parametrize("queries", [None, "new"])
def test_radius_neighbors_matches_sklearn(queries):
    data = _data("clustered", n_samples=220, n_features=8)
    X = data[:200]
    Q = None if queries is None else data[200:]
    ours = CosineNearestNeighbors(radius=0.05).fit(X)
    ref = NearestNeighbors(radius=0.05, metric="cosine").fit(X)
    distances, indices = ours.radius_neighbors(Q, sort_results=True)
    ref_indices = ref.radius_neighbors(Q, sort_results=True)[1]
    assert indices.dtype == object and len(indices) == len(ref_indices)
    exact = cosine_distances(X if Q is None else Q, X)
    for row, (idx, ref_idx) in enumerate(zip(indices, ref_indices, strict=True)):
        # Only points on the boundary (to float32 rounding) may differ.
        assert np.all(np.abs(exact[row, np.setxor1d(idx, ref_idx)] - 0.05) < 1e-5)
        assert_allclose(distances[row], exact[row, idx], atol=2e-6)
    assert sum(map(len, indices)) > 50
    graph = ours.radius_neighbors_graph(Q, mode="distance")
    assert graph.shape == (len(indices), 200)
    assert graph.nnz == sum(map(len, indices))


def test_radius_neighbors_options():
    X = np.array([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0]])
    nn = CosineNearestNeighbors(radius=0.5).fit(X)
    indices = nn.radius_neighbors([[1.0, 0.1]], radius=0.1, return_distance=False)
    assert_array_equal(indices[0], [0, 1])
    with pytest.raises(ValueError, match="return_distance must be True"):
        nn.radius_neighbors(X, return_distance=False, sort_results=True)


def test_score_samples_is_minus_mean_distance_and_flags_outliers():
    data = _clustered(700, 16, 3, seed=1)
    train, inliers = data[:600], data[600:]
    outliers = np.random.default_rng(0).standard_normal((100, 16))
    nn = CosineNearestNeighbors(n_neighbors=5).fit(train)
    test = np.vstack([inliers, outliers])
    scores = nn.score_samples(test)
    assert_allclose(scores, -nn.kneighbors(test)[0].mean(axis=1), rtol=1e-6)
    auc = roc_auc_score(np.r_[np.ones(100), np.zeros(100)], scores)
    assert auc > 0.95
    assert nn.score_samples().shape == (600,)


def test_score_samples_in_a_pipeline():
    X = _data("clustered", n_samples=200)
    pipe = make_pipeline(FunctionTransformer(lambda Z: 2.0 * Z), CosineNearestNeighbors())
    pipe.fit(X)
    alone = CosineNearestNeighbors().fit(X)
    assert_allclose(pipe.score_samples(X[:10]), alone.score_samples(X[:10]))


@pytest.mark.parametrize(("algorithm", "storage"), ALGORITHMS_AND_STORAGES)
def test_pickle_and_joblib_round_trip(algorithm, storage, tmp_path):
    if algorithm == "hnsw":
        pytest.importorskip("usearch")
    X = _data("clustered", n_samples=300)
    nn = CosineNearestNeighbors(n_neighbors=4, algorithm=algorithm, storage=storage).fit(X)
    joblib.dump(nn, tmp_path / "nn.joblib")
    for restored in (pickle.loads(pickle.dumps(nn)), joblib.load(tmp_path / "nn.joblib")):
        assert restored.index_nbytes_ == nn.index_nbytes_
        for a, b in zip(nn.kneighbors(X[:20]), restored.kneighbors(X[:20]), strict=True):
            assert_array_equal(a, b)
        assert_array_equal(nn.kneighbors(), restored.kneighbors())


def test_n_jobs_and_working_memory_do_not_change_results():
    X = _data("clustered", n_samples=3000, n_features=32)
    base = CosineNearestNeighbors(n_neighbors=5).fit(X[:2500]).kneighbors(X[2500:])
    for params in ({"n_jobs": 1}, {"n_jobs": 2, "working_memory": 0.2}, {"n_jobs": -1}):
        other = CosineNearestNeighbors(n_neighbors=5, **params).fit(X[:2500]).kneighbors(X[2500:])
        assert_allclose(other[0], base[0], atol=1e-6)
        assert np.mean(other[1] == base[1]) > 0.999


@pytest.mark.parametrize("working_memory", [None, 8])
def test_memory_stays_bounded_on_200k_rows(working_memory):
    n_samples, n_queries, k = 200_000, 300, 10
    X = _unit32(np.random.default_rng(0).standard_normal((n_samples, 16)))
    Q = X[:n_queries] + np.float32(0.01)
    nn = CosineNearestNeighbors(n_neighbors=k, working_memory=working_memory).fit(X)
    tracemalloc.start()
    try:
        distances, indices = nn.kneighbors(Q)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_array_equal(indices[:, 0], np.arange(n_queries))
    results = distances.nbytes + indices.nbytes + Q.nbytes  # output and normalised queries
    full_matrix = 4 * n_queries * n_samples  # 240 MB
    bound = (working_memory or 64) * 2**20
    assert peak - results <= bound < full_matrix / 3


def _recall(found, truth):
    return np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth, strict=True)])


@pytest.mark.slow
def test_hnsw_recall_on_clustered_data():
    X = _clustered(10_000, 48, n_clusters=50, seed=0, spread=0.5)
    fit, queries = X[:9500], X[9500:]
    truth = CosineNearestNeighbors(n_neighbors=10).fit(fit).kneighbors(queries)[1]
    ann = CosineNearestNeighbors(n_neighbors=10, algorithm="hnsw", random_state=0).fit(fit)
    distances, found = ann.kneighbors(queries)
    assert _recall(found, truth) >= 0.95
    assert np.all(np.diff(distances, axis=1) >= 0)
    # On the training data, the point itself is left out as in the exact search.
    train_found = ann.kneighbors(return_distance=False)
    assert not np.any(train_found == np.arange(9500)[:, None])


def test_hnsw_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "usearch", None)
    monkeypatch.setitem(sys.modules, "usearch.index", None)
    with pytest.raises(ImportError, match=r"pip install 'skembed\[ann\]'"):
        CosineNearestNeighbors(algorithm="hnsw").fit(np.eye(3))
    # The exact search, whatever the storage, needs no extra.
    CosineNearestNeighbors(n_neighbors=1, storage="int8").fit(np.eye(3)).kneighbors()


def test_cosine_diversity_matches_pairwise_mean():
    X = _data("clustered", n_samples=150)
    D = cosine_distances(X)
    expected = D[~np.eye(150, dtype=bool)].mean()
    assert cosine_diversity(X) == pytest.approx(expected, abs=1e-6)


def test_cosine_diversity_orders_sets():
    rng = np.random.default_rng(0)
    centre = rng.standard_normal(32)
    narrow = centre + 0.1 * rng.standard_normal((50, 32))
    broad = rng.standard_normal((50, 32))
    assert cosine_diversity(narrow) < 0.05 < 0.9 < cosine_diversity(broad)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        ([[1.0, 0.0]], "At least 2 rows"),
        ([[1.0, 0.0], [0.0, 0.0]], r"zero norm \(row index 1\)"),
        ([[1.0, np.nan], [0.0, 1.0]], "NaN"),
        ([1.0, 0.0], "2-D"),
    ],
)
def test_cosine_diversity_errors(X, message):
    with pytest.raises(ValueError, match=message):
        cosine_diversity(X)
