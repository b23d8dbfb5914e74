"""The README's main job (examples/train_text_and_tabular.py) runs end to end on a subset."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPT = EXAMPLES / "train_text_and_tabular.py"
# One row of the printed table: name, mean ± std over the folds, held out, seconds.
ROW = re.compile(r"^  (.+?)\s+([+-]\d\.\d{3}) ± (\d\.\d{3})\s+([+-]\d\.\d{3})\s+(\d+)$", re.M)
DEFAULT_MODELS = {
    "tabular only",
    "TF-IDF + tabular",
    "TF-IDF (score) + tabular",
    "embeddings (score) + tabular",
    "TF-IDF (score) + embeddings (score) + tabular",
}
# --all adds the two designs that lose and cost the most.
ALL_MODELS = DEFAULT_MODELS | {"embeddings + tabular", "embeddings (PCA 32) + tabular"}
USE_EMBEDDINGS = {name for name in ALL_MODELS if "embeddings" in name}


def _script_module():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_text_and_tabular
    finally:
        sys.path.remove(str(EXAMPLES))
    return train_text_and_tabular


def _table(out):
    return {name: float(mean) for name, mean, _std, _held, _seconds in ROW.findall(out)}


def _check_verdict(out, scores):
    """The printed winner and verdict are what the printed table says."""
    winner = re.search(r"^winner \(cross-validated\): (.+)$", out, re.M).group(1)
    assert scores[winner] == max(scores.values())
    best, verdict = re.search(
        r"^best with embeddings: (.+?) (beats|does not beat) TF-IDF \+ tabular by", out, re.M
    ).groups()
    assert best in USE_EMBEDDINGS
    assert scores[best] == max(scores[name] for name in scores if name in USE_EMBEDDINGS)
    assert (verdict == "beats") == (scores[best] > scores["TF-IDF + tabular"])
    assert f"saved the tuned pipeline {best!r}" in out


@pytest.mark.slow
@pytest.mark.timeout(900)  # a loaded machine embeds slowly
def test_main_job_trains_saves_reloads_and_beats_tabular_only(tmp_path):
    output = tmp_path / "model.joblib"
    command = [
        sys.executable,
        str(SCRIPT),
        "--n-samples",
        "400",
        "--cv",
        "2",
        "--n-estimators",
        "30",
        "--output",
        str(output),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=850)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    scores = _table(out)
    assert set(scores) == DEFAULT_MODELS
    # The reviews carry the signal; the tabular columns barely do (ROC-AUC ~0.5).
    assert scores["embeddings (score) + tabular"] > scores["tabular only"] + 0.1
    _check_verdict(out, scores)
    assert output.exists()
    assert "predictions of the reloaded pipeline (new process)" in out


@pytest.mark.slow
@pytest.mark.timeout(900)  # a loaded machine embeds slowly
def test_main_job_rating_regression_saves_and_reloads(tmp_path):
    command = [
        sys.executable,
        str(SCRIPT),
        "--target",
        "rating",
        "--n-samples",
        "400",  # the same reviews as the first test (subsets are stratified on rating)
        "--cv",
        "2",
        "--n-estimators",
        "20",
        "--output",
        str(tmp_path / "rating.joblib"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=850)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = _table(result.stdout)
    assert set(scores) == DEFAULT_MODELS
    assert all(score < 0 for score in scores.values())  # neg_mean_absolute_error
    _check_verdict(result.stdout, scores)
    assert "predictions of the reloaded pipeline (new process)" in result.stdout


def test_main_job_help():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True
    )
    assert "--backend" in result.stdout and "--n-samples" in result.stdout
    assert "--all" in result.stdout


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("regression", [False, True])
def test_cross_fitted_score_never_scores_a_row_it_learned_from(seed, regression):
    # Noise features and random labels: a score fitted on the rows it scores follows
    # their labels (in-sample), the cross-fitted one must not.
    rng = np.random.default_rng(seed)
    n_rows = int(rng.integers(120, 300))
    X = rng.normal(size=(n_rows, int(rng.integers(n_rows // 2, n_rows))))
    y = rng.integers(0, 2, n_rows) if not regression else rng.normal(size=n_rows)
    estimator = Ridge() if regression else RidgeClassifier()
    score = _script_module().CrossFittedScore(estimator, cv=5)

    def follows_labels(scores):
        scores = scores.ravel()
        if regression:
            return np.corrcoef(scores, y)[0, 1]
        return roc_auc_score(y, scores) - 0.5

    out_of_fold = score.fit_transform(X, y)
    in_sample = score.transform(X)
    assert out_of_fold.shape == in_sample.shape == (n_rows, 1)
    assert follows_labels(in_sample) > 0.3
    assert abs(follows_labels(out_of_fold)) < 0.2
    # Exactly the out-of-fold predictions, and transform is the model fitted on all.
    cv = StratifiedKFold(5) if not regression else 5
    method = "predict" if regression else "decision_function"
    expected = cross_val_predict(estimator, X, y, cv=cv, method=method)
    np.testing.assert_allclose(out_of_fold.ravel(), expected)
    np.testing.assert_allclose(in_sample.ravel(), getattr(estimator.fit(X, y), method)(X))
    assert list(score.get_feature_names_out()) == ["score0"]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a loaded machine embeds slowly
def test_main_job_runs_unchanged_with_the_openai_backend(fake_server, tmp_path):
    fake_server.configure(vector_mode="bag_of_words")
    command = [
        sys.executable,
        str(SCRIPT),
        "--backend",
        "openai",
        "--base-url",
        fake_server.base_url,
        "--dimensions",
        "64",
        "--n-samples",
        "200",
        "--cv",
        "2",
        "--n-estimators",
        "10",
        "--all",
        "--output",
        str(tmp_path / "m.joblib"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=850)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OpenAIEmbeddingTransformer" in result.stdout
    scores = _table(result.stdout)
    assert set(scores) == ALL_MODELS
    _check_verdict(result.stdout, scores)
    assert fake_server.stats()["times_embedded_max"] == 1  # embedded once, then cached
