"""The README's main job (examples/train_text_and_tabular.py) runs end to end on a subset."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_text_and_tabular.py"


@pytest.mark.slow
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
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    scores = {
        name: float(value)
        for name, value in re.findall(r"^  (.+?)\s+([+-]\d\.\d{3}) ±", out, flags=re.M)
    }
    assert set(scores) == {"tabular only", "TF-IDF text + tabular", "embeddings + tabular"}
    # The reviews carry the signal; the tabular columns barely do (ROC-AUC ~0.5).
    assert scores["embeddings + tabular"] > scores["tabular only"] + 0.1
    assert output.exists()
    assert "predictions of the reloaded pipeline (new process)" in out


def test_main_job_help():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True
    )
    assert "--backend" in result.stdout and "--n-samples" in result.stdout


@pytest.mark.slow
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
        "--output",
        str(tmp_path / "m.joblib"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OpenAIEmbeddingTransformer" in result.stdout
    assert fake_server.stats()["times_embedded_max"] == 1  # embedded once, then cached
