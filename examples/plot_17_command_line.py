"""
The command line in a training script
=====================================

A training pipeline often has an embedding step of its own (a ``Makefile`` rule, a
CI job, an Airflow task) that turns a table of texts into a file of vectors, and a
training step that reads it. ``skembed embed`` is that step::

    skembed embed reviews.parquet --column review_text --id-column review_id \\
        --out vectors.parquet

Here a script runs it with :mod:`subprocess` on clothing reviews with the bundled
local model (free and offline; ``--backend openai`` is the same command with a key),
trains a logistic regression on the vectors it wrote, and runs it again to show that
a re-run (or a run killed half way and started again) takes its vectors from the
cache. See :ref:`cli` for every option and exit status.
"""

# %%
# The table the embedding step reads
# ----------------------------------
# 250 reviews, their ids and whether the reviewer recommends the product.
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import RocCurveDisplay, roc_auc_score
from sklearn.model_selection import train_test_split

from skembed.datasets import load_clothing_reviews

reviews = load_clothing_reviews(n_samples=250, random_state=0).dropna(subset=["review_text"])
reviews = reviews.reset_index(drop=True)
reviews["review_id"] = [f"r{i:05d}" for i in range(len(reviews))]
work = Path(tempfile.mkdtemp(prefix="skembed-cli-"))
reviews[["review_id", "review_text"]].to_parquet(work / "reviews.parquet")
labels = reviews.set_index("review_id")["recommended_ind"]
print(len(reviews), "reviews,", f"{labels.mean():.0%} recommend")

# %%
# The embedding step
# ------------------
# ``sys.executable -m skembed`` is the ``skembed`` command of the Python running this
# script. A cache of its own, so that the first run really embeds; a real job leaves
# ``--cache`` out and shares the per-user cache. ``--json`` prints the summary for
# the script; the same summary goes to stderr for people reading the log.


def embed_step():
    done = subprocess.run(
        [sys.executable, "-m", "skembed", "embed", str(work / "reviews.parquet"),
         "--column", "review_text", "--id-column", "review_id",
         "--out", str(work / "vectors.parquet"), "--cache", str(work / "cache"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(done.stderr.strip())
    return json.loads(done.stdout)


first = embed_step()

# %%
# The training step
# -----------------
# It reads only the vector file: one row per review, the id column, and one list
# column of 384 floats per text column.
vectors = pd.read_parquet(work / "vectors.parquet")
X = np.stack(vectors["review_text"].to_numpy())
y = labels.loc[vectors["review_id"]].to_numpy()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0,
                                                    stratify=y)  # fmt: skip
model = LogisticRegression(max_iter=1000, class_weight="balanced").fit(X_train, y_train)
auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
print(f"held-out ROC AUC from the vector file: {auc:.3f}")

# %%
# The same command again
# ----------------------
# Nothing changed, so every text is a cache hit: a re-run of the pipeline (or a run
# killed with ``kill -9`` and started again) pays only for what is not cached yet.
second = embed_step()

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
RocCurveDisplay.from_estimator(model, X_test, y_test, ax=left, name="LogReg on vectors")
left.plot([0, 1], [0, 1], "k:", label="chance")
left.set_title(f"Recommended? ROC AUC {auc:.3f}")
left.legend(loc="lower right")
runs = ["first run", "same command again"]
cached = [first["cached"], second["cached"]]
sent = [first["sent"], second["sent"]]
right.bar(runs, sent, label="embedded")
right.bar(runs, cached, bottom=sent, label="from the cache")
for i, summary in enumerate((first, second)):
    right.text(i, summary["distinct"] * 1.01, f"{summary['seconds']:.1f} s", ha="center")
right.set_ylabel("distinct texts")
right.set_title("skembed embed, run twice")
right.legend(loc="center right")
fig.tight_layout()
plt.show()

# %%
# The second run embedded ``second["sent"]`` texts (none), took them all from the
# cache, and wrote the same vector file; the classifier trained on it reaches the ROC
# AUC in the left panel's title. With ``--backend openai``, ``--estimate`` prints the
# tokens and dollars a run would cost after cache hits, before sending anything, and
# ``--max-cost`` refuses a run that would cost more (exit status 3).
