"""
Polars: a polars DataFrame in, a polars DataFrame out
=====================================================

The embedding transformers take a polars ``Series`` or a one-column ``DataFrame``
as readily as pandas ones, and return polars with scikit-learn's
``set_output(transform="polars")``, also from inside a
:class:`~sklearn.compose.ColumnTransformer`. No conversion to pandas is needed.

We predict the department of a piece of clothing (dresses, tops, bottoms...) from the
text of its review and two numeric columns, with a
:class:`~sklearn.linear_model.LogisticRegression` on held-out reviews, and draw its
confusion matrix.
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
# A polars DataFrame
# ------------------
# The loader returns pandas; ``pl.from_pandas`` makes it a polars DataFrame (your
# data would come from ``pl.read_parquet`` or ``pl.read_csv``).
import polars as pl

from skembed.datasets import load_clothing_reviews

reviews = pl.from_pandas(load_clothing_reviews(n_samples=1000, random_state=0))
reviews = reviews.drop_nulls("department_name").with_columns(
    review=pl.concat_str(
        pl.col("title").fill_null(""), pl.lit(". "), pl.col("review_text").fill_null("")
    ).str.strip_chars(" .")
)
print(reviews.select("review", "age", "positive_feedback_count", "department_name").head(3))

# %%
# Embeddings as a polars DataFrame
# --------------------------------
# One column per dimension, named after the input column.
from sklearn.base import clone

vectors = clone(embedder).set_output(transform="polars").fit_transform(reviews["review"])
print(type(vectors).__name__, vectors.shape)
print(vectors.columns[:3], "...")

# %%
# Inside a ColumnTransformer
# --------------------------
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import StandardScaler

columns = ColumnTransformer(
    [
        ("text", embedder, "review"),
        ("numbers", StandardScaler(), ["age", "positive_feedback_count"]),
    ]
).set_output(transform="polars")
features = columns.fit_transform(reviews)
print(type(features).__name__, features.shape)
print(features.select(features.columns[:2] + features.columns[-2:]).head(3))

# %%
# Predict the department, on held-out reviews
# -------------------------------------------
import matplotlib.pyplot as plt
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

y = reviews["department_name"]
train, test, y_train, y_test = train_test_split(reviews, y, test_size=0.3, random_state=0)
model = make_pipeline(columns, LogisticRegression(C=10, max_iter=2000)).fit(train, y_train)
baseline = DummyClassifier().fit(train, y_train)
print(
    f"department accuracy on {len(test)} held-out reviews: {model.score(test, y_test):.2f} "
    f"(always the most frequent: {baseline.score(test, y_test):.2f})"
)

fig, ax = plt.subplots(figsize=(6, 5))
ConfusionMatrixDisplay.from_estimator(
    model, test, y_test, ax=ax, colorbar=False, xticks_rotation=30
)
ax.set_title("Department from the review (held out)")
fig.tight_layout()
plt.show()
