"""
skrub: an embedding encoder for the text columns of a TableVectorizer
=====================================================================

skrub's :class:`~skrub.TableVectorizer` turns a whole dataframe into numbers, one
encoder per kind of column: numbers pass through, columns with few distinct values
are one-hot encoded, and columns with many distinct strings ("high cardinality",
such as free text) go to ``high_cardinality``, by default a
:class:`~skrub.StringEncoder` (TF-IDF of character n-grams reduced to 30 components).
A skembed transformer can take that place, so the texts are embedded while every
other column is handled as before.

On clothing reviews, with a :class:`~sklearn.linear_model.LogisticRegression`
predicting whether the customer recommends the product, compared by ROC curves on
held-out reviews.
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
    embedder = OpenAIEmbeddingTransformer(model="text-embedding-3-small", on_invalid_text="zero")
else:
    embedder = LocalEmbeddingTransformer(on_invalid_text="zero")  # a blank review -> zeros

# %%
# A table with a text column
# --------------------------
from skembed.datasets import load_clothing_reviews

reviews = load_clothing_reviews(n_samples=1000, random_state=0)
reviews["review"] = (
    reviews["title"].fillna("") + ". " + reviews["review_text"].fillna("")
).str.strip(" .")
y = reviews["recommended_ind"]  # never use "rating" as a feature: it leaks the answer
table = reviews[["review", "age", "positive_feedback_count", "department_name"]]
print(table.head(3))

# %%
# The TableVectorizer, with and without embeddings
# ------------------------------------------------
# ``high_cardinality`` receives every text column (here, only ``review``); use
# ``specific_transformers=[(embedder, ["review"])]`` to name the columns instead.
from sklearn.preprocessing import StandardScaler
from skrub import TableVectorizer

vectorizer = TableVectorizer(numeric=StandardScaler(), high_cardinality=embedder)
features = vectorizer.fit_transform(table)
print(f"{table.shape[1]} columns -> {features.shape[1]} features:")
for column, kind in vectorizer.column_to_kind_.items():
    print(f"  {column:24s} {kind:16s} {type(vectorizer.transformers_[column]).__name__}")

# %%
# Recommends? ROC curves on held-out reviews
# ------------------------------------------
import matplotlib.pyplot as plt
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import RocCurveDisplay, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

train, test, y_train, y_test = train_test_split(table, y, test_size=0.3, stratify=y, random_state=0)
vectorizers = {
    "default (StringEncoder)": TableVectorizer(numeric=StandardScaler()),
    "high_cardinality=embedder": vectorizer,
}
fig, ax = plt.subplots(figsize=(6, 5))
for name, vectorizer in vectorizers.items():
    model = make_pipeline(vectorizer, LogisticRegression(max_iter=2000))
    model.fit(train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(test)[:, 1])
    print(f"  {name:26s} ROC-AUC {auc:.3f}")
    RocCurveDisplay.from_estimator(model, test, y_test, ax=ax, name=name)
ax.plot([0, 1], [0, 1], ":", color="grey")
ax.set_title("Recommends? (held-out reviews)")
fig.tight_layout()
plt.show()
