"""
Classification from text and tabular columns
============================================

Predict whether a customer recommends a piece of clothing from her review (text)
and from tabular columns (age, how many found the review helpful, product
department and class), with a :class:`~sklearn.ensemble.RandomForestClassifier` on a
:class:`~sklearn.compose.ColumnTransformer`: the embedding transformer is just one
more column step. Compared on the same held-out reviews with the tabular columns
alone and with a :class:`~sklearn.dummy.DummyClassifier`.

``train_text_and_tabular.py`` is the longer version of this job (grid search, TF-IDF
comparison, saving and reloading the model).
"""

# %%
# Data
# ----
from _backend import describe, make_embedder, make_parser, parse_args
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from skembed.datasets import load_clothing_reviews

parser = make_parser(__doc__)
parser.add_argument("--n-samples", type=int, default=1000, help="reviews to use")
args = parse_args(parser)

reviews = load_clothing_reviews(n_samples=args.n_samples, random_state=0)
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

# %%
# Models
# ------
embedder = make_embedder(args, on_invalid_text="zero")
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
# Fit and score on held-out reviews
# ---------------------------------
# 83% of reviewers recommend, so accuracy says little (always "yes" scores 0.83).
# ROC-AUC measures how well the predicted probabilities rank the reviews.
print(
    f"{len(train)} reviews to train, {len(test)} to test; "
    f"{y.mean():.0%} recommend; text embedded with {describe(embedder)}"
)
for name, model in models.items():
    model.fit(train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(test)[:, 1])
    print(f"  {name:28s} ROC-AUC {auc:.3f}")
