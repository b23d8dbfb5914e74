"""
Regression: predict a review's rating from its text and tabular columns
=======================================================================

Predict the star rating (1 to 5) of a clothing review from its text, embedded, next
to the reviewer's age, the review's helpful votes and the product's department, with
a :class:`~sklearn.ensemble.RandomForestRegressor`. A forest splits on one feature at a
time and does poorly on hundreds of weak embedding coordinates from a thousand rows, so
the embeddings are first compressed to 16 principal components. The baseline is a
:class:`~sklearn.dummy.DummyRegressor` that always predicts the median rating; the
score is the mean absolute error (MAE) on held-out reviews, in stars, under 5-fold
cross-validation.
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
# Data
# ----
import matplotlib.pyplot as plt
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from skembed.datasets import load_clothing_reviews

reviews = load_clothing_reviews(n_samples=1000, random_state=0)
reviews["review"] = (
    reviews["title"].fillna("") + ". " + reviews["review_text"].fillna("")
).str.strip(" .")
categories = ["department_name", "class_name"]
reviews[categories] = reviews[categories].fillna("unknown")
y = reviews["rating"]  # "recommended_ind" would leak the answer: not a feature
print(f"{len(reviews)} reviews; ratings {y.value_counts().sort_index().to_dict()}")

# %%
# Models
# ------
tabular = [
    ("numbers", "passthrough", ["age", "positive_feedback_count"]),
    ("categories", OneHotEncoder(handle_unknown="ignore"), categories),
]
forest = RandomForestRegressor(
    n_estimators=100, max_features=0.5, min_samples_leaf=3, random_state=0
)
text = make_pipeline(embedder, PCA(n_components=16, random_state=0))
models = {
    "dummy (median rating)": DummyRegressor(strategy="median"),
    "tabular only": make_pipeline(ColumnTransformer(tabular), forest),
    "review embedding + tabular": make_pipeline(
        ColumnTransformer([("text", text, "review"), *tabular]), forest
    ),
}

# %%
# Cross-validated mean absolute error
# -----------------------------------
# The texts are embedded once: every fold reads their vectors from the cache.
# Each review is predicted by the model of the fold that held it out.
embedder.transform(reviews["review"])
print("MAE in stars, lower is better:")
folds = list(KFold(5, shuffle=True, random_state=0).split(reviews))
maes, predicted = {}, {}
for name, model in models.items():
    predicted[name] = cross_val_predict(model, reviews, y, cv=folds)
    errors = np.abs(predicted[name] - y)
    maes[name] = [errors.iloc[test].mean() for _, test in folds]
    print(f"  {name:28s} {np.mean(maes[name]):.3f} ± {np.std(maes[name]):.3f}")

# %%
# Predicted against true ratings
# ------------------------------
# Left, the error of each model (mean and spread over the folds); right, the
# held-out predictions of the text model for each true rating.
fig, (bars, boxes) = plt.subplots(1, 2, figsize=(11, 4))
names = list(maes)
bars.barh(names, [np.mean(maes[n]) for n in names], xerr=[np.std(maes[n]) for n in names])
bars.invert_yaxis()
bars.set_xlabel("mean absolute error (stars, 5-fold)")
bars.set_title("Lower is better")
stars = sorted(y.unique())
boxes.boxplot([predicted["review embedding + tabular"][y == s] for s in stars], positions=stars)
boxes.plot([1, 5], [1, 5], ":", color="grey", label="perfect")
boxes.set_xlabel("true rating")
boxes.set_ylabel("predicted rating (held out)")
boxes.set_title("Review embedding + tabular")
boxes.legend()
fig.tight_layout()
plt.show()
