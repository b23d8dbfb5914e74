"""
Code search: find a scikit-learn function from a plain-English question
=======================================================================

Collect the public functions and classes of an installed package (scikit-learn
here) with :mod:`inspect`, embed each one's name, signature and docstring summary (the source
or the whole docstring also work, at a higher embedding cost),
and answer questions in plain English with the nearest vectors.

The questions below are written for this example, each with the function that
answers it, so we can report how often it is found first (recall@1) and among the
first five, against picking at random.
"""

# %%
# Choose the embedding model
# --------------------------
# Offline on the bundled local model; ``SKEMBED_EXAMPLE_BACKEND=openai`` (with
# ``OPENAI_API_KEY``) switches to OpenAI's embeddings.
import os

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer

BACKEND = os.environ.get("SKEMBED_EXAMPLE_BACKEND", "local")
if BACKEND == "openai":
    embedder = OpenAIEmbeddingTransformer(model="text-embedding-3-small")
else:
    embedder = LocalEmbeddingTransformer()

# %%
# Collect the functions
# ---------------------
import importlib
import inspect

import matplotlib.pyplot as plt
import numpy as np

from skembed.neighbors import CosineNearestNeighbors

SUBMODULES = [
    "",
    ".cluster",
    ".compose",
    ".covariance",
    ".cross_decomposition",
    ".datasets",
    ".decomposition",
    ".discriminant_analysis",
    ".dummy",
    ".ensemble",
    ".feature_extraction.text",
    ".feature_selection",
    ".gaussian_process",
    ".impute",
    ".inspection",
    ".isotonic",
    ".kernel_approximation",
    ".linear_model",
    ".manifold",
    ".metrics",
    ".mixture",
    ".model_selection",
    ".multiclass",
    ".naive_bayes",
    ".neighbors",
    ".neural_network",
    ".pipeline",
    ".preprocessing",
    ".random_projection",
    ".semi_supervised",
    ".svm",
    ".tree",
    ".utils",
]


def describe_object(name, obj):
    """Name, signature and the docstring's summary: short texts, quick to embed."""
    try:
        signature = str(inspect.signature(obj))
    except (TypeError, ValueError):
        signature = "()"
    doc = inspect.getdoc(obj) or ""
    summary = doc.split("\n\n")[0]
    return f"{name}{signature}\n{summary}"


entries = {}
for suffix in SUBMODULES:
    try:
        module = importlib.import_module("sklearn" + suffix)
    except ImportError:
        continue
    for name in getattr(module, "__all__", []):
        try:
            obj = getattr(module, name)
        except (AttributeError, ImportError):  # e.g. experimental names not enabled
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            # The public path, e.g. sklearn.metrics.roc_auc_score (first one wins).
            entries.setdefault(obj, (f"{module.__name__}.{name}", describe_object(name, obj)))
names = [name for name, _ in entries.values()]
texts = [text for _, text in entries.values()]
print(f"{len(texts)} public functions and classes of scikit-learn; the first, as embedded:")
print("  " + texts[0][:300].replace("\n", "\n  ") + " ...")

# %%
# Embed and index
# ---------------
index = CosineNearestNeighbors(n_neighbors=10).fit(embedder.fit_transform(texts))

# %%
# Ask in plain English
# --------------------
QUESTIONS = {
    "how good is my classifier at ranking positives above negatives": "roc_auc_score",
    "cut my data into a training part and a testing part": "train_test_split",
    "fill in the missing values of a column with its mean": "SimpleImputer",
    "group similar points together without labels": "KMeans",
    "turn category names into columns of zeros and ones": "OneHotEncoder",
    "squash the data down to two dimensions to draw it": "TSNE",
    "try every combination of hyperparameters with cross-validation": "GridSearchCV",
    "count how often each word appears in each document": "CountVectorizer",
    "a table of true versus predicted classes": "confusion_matrix",
    "rescale each feature to zero mean and unit variance": "StandardScaler",
    "chain preprocessing steps and a model into one object": "Pipeline",
    "a baseline that always predicts the most common class": "DummyClassifier",
    "find the closest points to a query point": "NearestNeighbors",
    "apply different preprocessing to different columns of a dataframe": "ColumnTransformer",
    "average squared difference between predictions and targets": "mean_squared_error",
    "reduce dimensions by keeping the directions of largest variance": "PCA",
}
_, found = index.kneighbors(embedder.transform(list(QUESTIONS)))
short = [name.rsplit(".", 1)[1] for name in names]
ranks = []
for (question, answer), rows in zip(QUESTIONS.items(), found, strict=True):
    hits = [short[row] for row in rows]
    ranks.append(hits.index(answer) + 1 if answer in hits else None)
    print(f"{question!r}\n  -> {', '.join(names[row] for row in rows[:3])}")

ks = np.arange(1, 11)
recall = [np.mean([rank is not None and rank <= k for rank in ranks]) for k in ks]
print(f"\n{len(QUESTIONS)} questions over {len(names)} objects:")
print(f"  recall@1 {recall[0]:.2f}   (random: {1 / len(names):.3f})")
print(f"  recall@5 {recall[4]:.2f}   (random: {5 / len(names):.3f})")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(ks, recall, "o-", label="embedding search")
ax.plot(ks, ks / len(names), ":", color="grey", label="random")
ax.set_ylim(0, 1)
ax.set_xticks(ks)
ax.set_xlabel("k (results read)")
ax.set_ylabel("recall@k")
ax.set_title(f"The right object among the first k of {len(names)}")
ax.legend()
fig.tight_layout()
plt.show()
