"""Tests of LinearEmbeddingAdapter on synthetic embeddings with a planted distortion."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import normalize

from skembed import LinearEmbeddingAdapter

N_CLASSES = 4
N_SIGNAL = 4
N_FEATURES = 16
NOISE_GAIN = 6.0


def _planted_map(seed=0):
    """A rotation after a gain of NOISE_GAIN on the class-free latent directions."""
    rng = np.random.RandomState(seed)
    rotation = np.linalg.qr(rng.normal(size=(N_FEATURES, N_FEATURES)))[0]
    gain = np.r_[np.ones(N_SIGNAL), np.full(N_FEATURES - N_SIGNAL, NOISE_GAIN)]
    return rotation * gain


def _latent(n_samples, rng):
    """Class signal in the first N_SIGNAL latent directions, class-free noise in the rest."""
    y = rng.randint(N_CLASSES, size=n_samples)
    signal = np.eye(N_CLASSES, N_SIGNAL)[y] + 0.3 * rng.normal(size=(n_samples, N_SIGNAL))
    noise = rng.normal(size=(n_samples, N_FEATURES - N_SIGNAL))
    return np.hstack([signal, noise]), y


def _distorted(n_samples, seed):
    rng = np.random.RandomState(seed)
    latent, y = _latent(n_samples, rng)
    return latent @ _planted_map().T, y


def _nearest_centroid_accuracy(Z_train, y_train, Z_test, y_test):
    Z_train, Z_test = normalize(Z_train), normalize(Z_test)
    centroids = normalize(np.vstack([Z_train[y_train == k].mean(axis=0) for k in range(N_CLASSES)]))
    return np.mean(np.argmax(Z_test @ centroids.T, axis=1) == y_test)


def _pairs(X, y, n_pairs, rng):
    """Half same-class (+1), half different-class (-1) pairs of distinct rows."""
    left, right = rng.randint(len(y), size=(2, 8 * n_pairs))
    left, right = left[left != right], right[left != right]
    same = y[left] == y[right]
    half = n_pairs // 2
    left = np.r_[left[same][:half], left[~same][:half]]
    right = np.r_[right[same][:half], right[~same][:half]]
    return X[left], X[right], np.where(y[left] == y[right], 1.0, -1.0)


def _cosines(left, right):
    return np.sum(normalize(left) * normalize(right), axis=1)


def _best_threshold(cosines, target):
    candidates = np.sort(cosines)
    accuracies = [np.mean((cosines >= c) == (target > 0)) for c in candidates]
    return candidates[int(np.argmax(accuracies))]


def _threshold_accuracy(train_cos, train_target, test_cos, test_target):
    threshold = _best_threshold(train_cos, train_target)
    return np.mean((test_cos >= threshold) == (test_target > 0))


@pytest.mark.parametrize("objective", ["softmax", "mse"])
def test_fit_undoes_planted_map(objective):
    X_train, y_train = _distorted(300, seed=1)
    X_test, y_test = _distorted(300, seed=2)
    adapter = LinearEmbeddingAdapter(objective=objective).fit(X_train, y_train)

    before = _nearest_centroid_accuracy(X_train, y_train, X_test, y_test)
    after = _nearest_centroid_accuracy(
        adapter.transform(X_train), y_train, adapter.transform(X_test), y_test
    )
    assert before < 0.35
    assert after > 0.9

    # Seen from the latent space, the learned map must favour the class directions
    # that the planted map had drowned (their gain goes from 1 / NOISE_GAIN to over 5).
    column_norms = np.linalg.norm(adapter.coef_ @ _planted_map(), axis=0)
    gain = column_norms[:N_SIGNAL].mean() / column_norms[N_SIGNAL:].mean()
    assert gain > 5


def test_fit_pairs_raises_held_out_pair_accuracy():
    X, y = _distorted(400, seed=3)
    rng = np.random.RandomState(0)
    train_left, train_right, train_target = _pairs(X[:200], y[:200], 600, rng)
    test_left, test_right, test_target = _pairs(X[200:], y[200:], 600, rng)

    before = _threshold_accuracy(
        _cosines(train_left, train_right),
        train_target,
        _cosines(test_left, test_right),
        test_target,
    )
    adapter = LinearEmbeddingAdapter().fit_pairs(train_left, train_right, train_target)
    T = adapter.transform
    after = _threshold_accuracy(
        _cosines(T(train_left), T(train_right)),
        train_target,
        _cosines(T(test_left), T(test_right)),
        test_target,
    )
    assert before < 0.6
    assert after > 0.8


def test_fit_pairs_moves_cosines_toward_targets():
    X, y = _distorted(200, seed=4)
    left, right, target = _pairs(X, y, 400, np.random.RandomState(1))
    adapter = LinearEmbeddingAdapter().fit_pairs(left, right, target)
    before = np.mean((_cosines(left, right) - target) ** 2)
    after = np.mean((_cosines(adapter.transform(left), adapter.transform(right)) - target) ** 2)
    assert after < 0.5 * before


def test_n_components_starts_from_the_top_singular_directions():
    X, y = _distorted(200, seed=5)
    adapter = LinearEmbeddingAdapter(n_components=3, alpha=1e6).fit(X, y)
    assert adapter.transform(X).shape == (200, 3)
    top = np.linalg.svd(normalize(X), full_matrices=False)[2][:3]
    # The rows are (up to sign and order) the top right singular vectors.
    assert_allclose(np.abs(adapter.coef_ @ top.T), np.eye(3), atol=1e-4)
    assert adapter.get_feature_names_out().tolist() == [
        "linearembeddingadapter0",
        "linearembeddingadapter1",
        "linearembeddingadapter2",
    ]


def test_large_alpha_keeps_the_identity():
    X, y = _distorted(100, seed=6)
    adapter = LinearEmbeddingAdapter(alpha=1e6).fit(X, y)
    assert_allclose(adapter.coef_, np.eye(N_FEATURES), atol=1e-4)
    assert_allclose(adapter.transform(X), normalize(X), atol=1e-4)


def test_transform_output_is_unit_rows_and_zero_rows_stay_zero():
    X, y = _distorted(100, seed=7)
    X[5] = 0.0
    adapter = LinearEmbeddingAdapter().fit(X, y)
    Z = adapter.transform(X)
    assert np.all(np.isfinite(Z))
    assert_array_equal(Z[5], 0.0)
    assert_allclose(np.linalg.norm(np.delete(Z, 5, axis=0), axis=1), 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(dtype):
    X, y = _distorted(80, seed=8)
    adapter = LinearEmbeddingAdapter().fit(X.astype(dtype), y)
    assert adapter.coef_.dtype == dtype
    assert adapter.transform(X.astype(dtype)).dtype == dtype
    assert adapter.transform(X.astype(np.int64)).dtype == np.float64


def test_fit_is_deterministic_and_refits_from_scratch():
    X_a, y_a = _distorted(120, seed=9)
    X_b, y_b = _distorted(120, seed=10)
    left, right, target = _pairs(X_b, y_b, 200, np.random.RandomState(2))
    fresh = LinearEmbeddingAdapter().fit(X_b, y_b)
    assert_allclose(LinearEmbeddingAdapter().fit(X_b, y_b).coef_, fresh.coef_, rtol=1e-10)

    reused = LinearEmbeddingAdapter().fit(X_a, y_a).fit(X_b, y_b)
    assert_allclose(reused.coef_, fresh.coef_, rtol=1e-10)

    fresh_pairs = LinearEmbeddingAdapter().fit_pairs(left, right, target)
    reused.fit_pairs(left, right, target)
    assert_allclose(reused.coef_, fresh_pairs.coef_, rtol=1e-10)


def test_pickle_round_trip():
    X, y = _distorted(100, seed=11)
    adapter = LinearEmbeddingAdapter(n_components=5).fit(X, y)
    restored = pickle.loads(pickle.dumps(adapter))
    assert_array_equal(restored.transform(X), adapter.transform(X))


def test_grid_search_over_alpha_in_a_pipeline():
    X, y = _distorted(150, seed=12)
    pipeline = make_pipeline(LinearEmbeddingAdapter(), LogisticRegression())
    search = GridSearchCV(
        pipeline, {"linearembeddingadapter__alpha": [1e-2, 1e3]}, cv=3, error_score="raise"
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    # alpha reaches the adapter: a strong pull to the identity keeps the distorted cosines.
    assert scores[0] > scores[1] + 0.1
    assert search.best_params_ == {"linearembeddingadapter__alpha": 1e-2}


def test_set_output_pandas_names_columns():
    pd = pytest.importorskip("pandas")
    X, y = _distorted(60, seed=13)
    frame = pd.DataFrame(X, columns=[f"e{i}" for i in range(N_FEATURES)])
    adapter = LinearEmbeddingAdapter(n_components=2).set_output(transform="pandas")
    out = adapter.fit(frame, y).transform(frame)
    assert list(out.columns) == ["linearembeddingadapter0", "linearembeddingadapter1"]
    assert adapter.feature_names_in_.tolist() == list(frame.columns)


def test_fit_without_y_is_a_clear_error():
    X, _ = _distorted(20, seed=14)
    with pytest.raises(ValueError, match="requires y to be passed"):
        LinearEmbeddingAdapter().fit(X)
    with pytest.raises(ValueError, match="requires y to be passed"):
        LinearEmbeddingAdapter().fit(X, None)


def test_one_class_is_a_clear_error():
    X, _ = _distorted(20, seed=15)
    with pytest.raises(ValueError, match="at least 2 classes; got 1 class"):
        LinearEmbeddingAdapter().fit(X, np.zeros(20))


def test_continuous_y_is_rejected_by_fit():
    X, _ = _distorted(20, seed=16)
    with pytest.raises(ValueError, match="Unknown label type"):
        LinearEmbeddingAdapter().fit(X, np.linspace(0, 1, 20))


def test_nan_and_wrong_width_use_sklearn_messages():
    X, y = _distorted(40, seed=17)
    adapter = LinearEmbeddingAdapter().fit(X, y)
    expected = "X has 3 features, but LinearEmbeddingAdapter is expecting 16 features"
    with pytest.raises(ValueError, match=expected):
        adapter.transform(X[:, :3])
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        LinearEmbeddingAdapter().fit(bad, y)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        adapter.transform(bad)


def test_empty_input_names_the_sample_count():
    with pytest.raises(ValueError, match="0 sample"):
        LinearEmbeddingAdapter().fit(np.empty((0, 4)), np.empty(0))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_components": 17}, "n_components=17 must be at most n_features=16"),
        ({"n_components": 12}, "at most the number of training rows \\(10\\)"),
    ],
)
def test_n_components_bounds(params, message):
    X, y = _distorted(10, seed=18)
    with pytest.raises(ValueError, match=message):
        LinearEmbeddingAdapter(**params).fit(X, y)


def test_fit_pairs_validation():
    X, y = _distorted(30, seed=19)
    left, right, target = _pairs(X, y, 20, np.random.RandomState(3))
    adapter = LinearEmbeddingAdapter()
    with pytest.raises(ValueError, match="same number of columns; got 16 and 15"):
        adapter.fit_pairs(left, right[:, :15], target)
    bad = right.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Input X_right contains infinity"):
        adapter.fit_pairs(left, bad, target)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        adapter.fit_pairs(left, right[:-1], target)
    out_of_range = target.copy()
    out_of_range[7] = 2.0
    with pytest.raises(ValueError, match=r"row 7 is 2\.0\."):
        adapter.fit_pairs(left, right, out_of_range)
    with pytest.raises(ValueError, match="objective='softmax' needs class labels"):
        LinearEmbeddingAdapter(objective="softmax").fit_pairs(left, right, target)


def test_fit_pairs_sets_input_width_from_the_pairs():
    X, y = _distorted(30, seed=20)
    left, right, target = _pairs(X, y, 20, np.random.RandomState(4))
    adapter = LinearEmbeddingAdapter(n_components=4).fit_pairs(left, right, target)
    assert adapter.n_features_in_ == N_FEATURES
    assert adapter.transform(X).shape == (30, 4)


def test_max_iter_reached_warns():
    X, y = _distorted(100, seed=21)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        LinearEmbeddingAdapter(max_iter=1).fit(X, y)


def test_clone_keeps_only_params():
    adapter = LinearEmbeddingAdapter(alpha=0.5, objective="mse")
    X, y = _distorted(40, seed=22)
    adapter.fit(X, y)
    copy = clone(adapter)
    assert copy.get_params() == adapter.get_params()
    assert not hasattr(copy, "coef_")


# -- alpha="auto": internal validation, the initial map among the candidates ----------


def _clean_task(n_samples, n_features, rng):
    """Embeddings in which cosine is already right: class clusters plus isotropic noise."""
    y = rng.randint(N_CLASSES, size=n_samples)
    centres = normalize(rng.normal(size=(N_CLASSES, n_features)))
    return centres[y] + rng.uniform(0.3, 1.2) * rng.normal(size=(n_samples, n_features)) / np.sqrt(
        n_features
    ), y


def test_auto_alpha_never_makes_clean_embeddings_worse():
    # Raw cosines are already ideal and rows are few for the size of the map (the regime
    # in which a fixed alpha overfits): on held-out rows, the default must not lose
    # beyond noise, whatever the sizes.
    losses = []
    for seed in range(5):
        rng = np.random.RandomState(seed)
        n_features = int(rng.choice([16, 48, 96]))
        n_train = int(rng.randint(40, 120))
        X, y = _clean_task(n_train + 400, n_features, rng)
        adapter = LinearEmbeddingAdapter().fit(X[:n_train], y[:n_train])
        raw = _nearest_centroid_accuracy(X[:n_train], y[:n_train], X[n_train:], y[n_train:])
        Z = adapter.transform(X)
        adapted = _nearest_centroid_accuracy(Z[:n_train], y[:n_train], Z[n_train:], y[n_train:])
        assert adapted >= raw - 0.04, (seed, raw, adapted, adapter.alpha_)
        losses.append(raw - adapted)
        assert np.inf in adapter.alpha_scores_
    assert np.mean(losses) <= 0.01, losses


def _paraphrase_pairs(items, paraphrases, index, n_pairs, rng):
    """Pairs (item, its paraphrase) +1 and (item, another's paraphrase) -1."""
    left = rng.choice(index, n_pairs)
    right = left.copy()
    negative = np.arange(n_pairs) % 2 == 1
    right[negative] = rng.choice(index, negative.sum())
    return items[left], paraphrases[right], np.where(negative, -1.0, 1.0)


def test_auto_alpha_never_makes_strong_pair_cosines_worse():
    # Pairs whose raw cosine already separates them well (a text and a paraphrase of it,
    # against a random other), few of them for the size of the map (100 to 800 pairs, the
    # regime of an NLI-style set where alpha=0.01 lost 4 points): the default map keeps
    # the held-out pair accuracy, whatever the number of pairs, the width and the noise.
    for seed in range(4):
        rng = np.random.RandomState(seed)
        n_features = int(rng.choice([32, 64]))
        n_pairs = int(rng.randint(100, 801))
        items = normalize(rng.normal(size=(1200, n_features)))
        noise = rng.uniform(0.6, 1.0)
        paraphrases = items + noise * rng.normal(size=items.shape) / np.sqrt(n_features)

        train = _paraphrase_pairs(items, paraphrases, np.arange(600), n_pairs, rng)
        test = _paraphrase_pairs(items, paraphrases, np.arange(600, 1200), 1000, rng)
        adapter = LinearEmbeddingAdapter().fit_pairs(*train)
        before = _threshold_accuracy(
            _cosines(train[0], train[1]), train[2], _cosines(test[0], test[1]), test[2]
        )
        T = adapter.transform
        after = _threshold_accuracy(
            _cosines(T(train[0]), T(train[1])), train[2], _cosines(T(test[0]), T(test[1])), test[2]
        )
        assert before > 0.9, (seed, before)  # the raw space is already good
        assert after >= before - 0.01, (seed, n_pairs, before, after, adapter.alpha_)


def test_auto_alpha_learns_where_the_data_show_a_gain():
    X, y = _distorted(600, seed=7)
    adapter = LinearEmbeddingAdapter().fit(X[:300], y[:300])
    assert np.isfinite(adapter.alpha_) and adapter.alpha_ in (1.0, 0.1, 0.01, 0.001)
    assert max(adapter.alpha_scores_.values()) > adapter.alpha_scores_[np.inf] + 0.1
    Z = adapter.transform(X)
    assert _nearest_centroid_accuracy(Z[:300], y[:300], Z[300:], y[300:]) > (
        _nearest_centroid_accuracy(X[:300], y[:300], X[300:], y[300:]) + 0.1
    )


def test_auto_alpha_is_deterministic_and_reported():
    X, y = _distorted(200, seed=8)
    first = LinearEmbeddingAdapter().fit(X, y)
    second = LinearEmbeddingAdapter().fit(X, y)
    assert first.alpha_ == second.alpha_
    assert first.alpha_scores_ == second.alpha_scores_
    assert_array_equal(first.coef_, second.coef_)
    fixed = LinearEmbeddingAdapter(alpha=0.1).fit(X, y)
    assert fixed.alpha_ == 0.1 and not hasattr(fixed, "alpha_scores_")
    # The chosen alpha refitted on all rows is exactly what alpha=alpha_ gives.
    if np.isfinite(first.alpha_):
        refit = LinearEmbeddingAdapter(alpha=first.alpha_).fit(X, y)
        assert_allclose(refit.coef_, first.coef_, rtol=1e-10)


def test_auto_alpha_keeps_the_initial_map_without_enough_data():
    X = np.random.RandomState(0).normal(size=(5, 6))
    adapter = LinearEmbeddingAdapter().fit(X, [0, 0, 1, 1, 1])  # a class of 2 rows
    assert adapter.alpha_ == np.inf and adapter.n_iter_ == 0
    assert_allclose(adapter.coef_, np.eye(6))


def test_auto_alpha_with_a_projection_wider_than_a_fold_keeps_the_initial_map():
    X = np.random.RandomState(1).normal(size=(9, 10))
    adapter = LinearEmbeddingAdapter(n_components=7).fit(X, [0, 1, 2] * 3)
    assert adapter.alpha_ == np.inf and adapter.coef_.shape == (7, 10)
