"""
The ``dimensions`` trade-off: shorter vectors, lower accuracy?
==============================================================

OpenAI's text-embedding-3 models can return shorter vectors (``dimensions``), which
are cheaper to store and faster to search. A shortened vector is the full vector cut
to its first ``d`` coordinates and re-normalised, so
``OpenAIEmbeddingTransformer(dimensions=d, dimensions_from_full=True)`` requests and
caches the full vector once per text and serves every ``d`` from it: trying 1536,
512 and 256 costs the tokens of one run. Those models were trained so that the first
coordinates carry the most information (Matryoshka representation learning).

We measure what each size costs in accuracy: a logistic regression predicts the
topic of BBC News articles from their vectors (5-fold cross-validation).

Offline, the bundled 384-d MiniLM model shows the same truncate-and-renormalise at
384, 192, 96 and 48 dimensions. Be warned that MiniLM was **not** trained for
truncation: its coordinates are not ordered by importance, so its accuracy falls
faster than a Matryoshka model's would. PCA to the same size, a reduction *learned*
from the data, is drawn alongside for comparison.
"""

# %%
# Choose the embedding model
# --------------------------
# Offline on the bundled local model; ``SKEMBED_EXAMPLE_BACKEND=openai`` (with
# ``OPENAI_API_KEY``) measures text-embedding-3-small at 1536, 512 and 256.
import os

import numpy as np

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer

BACKEND = os.environ.get("SKEMBED_EXAMPLE_BACKEND", "local")
SIZES = [1536, 512, 256] if BACKEND == "openai" else [384, 192, 96, 48]


def embed(texts, size):
    """Vectors of ``size`` dimensions, each the full vector cut and re-normalised."""
    if BACKEND == "openai":
        # The API's own shortening, served from the cached full-size vector.
        return OpenAIEmbeddingTransformer(
            model="text-embedding-3-small", dimensions=size, dimensions_from_full=True
        ).fit_transform(texts)
    cut = LocalEmbeddingTransformer().fit_transform(texts)[:, :size]
    return cut / np.linalg.norm(cut, axis=1, keepdims=True)


# %%
# Accuracy at each size
# ---------------------
import matplotlib.pyplot as plt
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from skembed.datasets import load_bbc_news

news = load_bbc_news(n_samples=500, random_state=0)
texts = news["headline"] + ". " + news["text"].str.split("\n").str[0]
y = news["topic"]
folds = StratifiedKFold(5, shuffle=True, random_state=0)
classifier = LogisticRegression(C=10, max_iter=2000)
full = embed(texts, SIZES[0])
print(f"{len(news)} articles; topic accuracy, 5-fold, chance {1 / y.nunique():.2f}")
print(f"{'dimensions':>10s} {'truncated':>10s} {'PCA':>8s}")
truncated, pca = [], []
for size in SIZES:
    truncated.append(cross_val_score(classifier, embed(texts, size), y, cv=folds).mean())
    if size == SIZES[0]:  # PCA to full size is a rotation: nothing to learn
        pca.append(truncated[-1])
    elif size >= len(news) * 4 // 5:  # PCA cannot learn more components than rows
        pca.append(np.nan)
    else:
        reduced = make_pipeline(PCA(n_components=size, random_state=0), classifier)
        pca.append(cross_val_score(reduced, full, y, cv=folds).mean())
    print(f"{size:10d} {truncated[-1]:10.3f} {pca[-1]:8.3f}".replace("nan", "  -"))

# %%
# Plot
# ----
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(SIZES, truncated, "o-", label="first d coordinates, re-normalised")
ax.plot(SIZES, pca, "s--", label="PCA to d (learned from the data)")
ax.axhline(1 / y.nunique(), color="grey", linestyle=":", label="chance")
ax.set_xscale("log", base=2)
ax.set_xticks(SIZES, [str(size) for size in SIZES])
ax.set_xlabel("dimensions")
ax.set_ylabel("topic accuracy (5-fold)")
ax.set_title("text-embedding-3-small" if BACKEND == "openai" else "local all-MiniLM-L6-v2")
ax.legend()
fig.tight_layout()
plt.show()
