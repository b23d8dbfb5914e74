"""
Text + tabular model: review embeddings next to numeric and categorical columns
================================================================================

The main job of skembed, end to end, offline by default:

1. load the Women's E-Commerce Clothing Reviews (text, age, feedback count, department,
   and whether the reviewer recommends the item);
2. embed the reviews with the bundled local model (a progress bar shows it; vectors
   are cached, so a second run and every cross-validation fold reuse them);
3. tune a ``RandomForestClassifier`` on a ``ColumnTransformer`` of
   [text embeddings | scaled numbers | one-hot categories] with ``GridSearchCV``;
4. compare, on the same folds, with a tabular-only model and a TF-IDF text model;
5. save the fitted pipeline with ``joblib.dump``, reload it in a *new process* and
   predict.

``--backend openai`` runs the same script with OpenAI's embeddings (``OPENAI_API_KEY``
in the environment; ``--base-url`` for an OpenAI-compatible server).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skembed.datasets import load_clothing_reviews

NUMERIC = ["age", "positive_feedback_count"]
CATEGORICAL = ["division_name", "department_name", "class_name"]
TARGETS = {
    # Rating and recommendation leak into each other: never use one to predict the other.
    "recommended": ("recommended_ind", "roc_auc"),
    "rating": ("rating", "neg_mean_absolute_error"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--backend",
        choices=["local", "openai"],
        default="local",
        help="embedding model: the bundled local one, or OpenAI's API",
    )
    parser.add_argument(
        "--model", default="text-embedding-3-small", help="OpenAI model (with --backend openai)"
    )
    parser.add_argument(
        "--dimensions", type=int, default=256, help="OpenAI vector size (with --backend openai)"
    )
    parser.add_argument(
        "--base-url", default=None, help="OpenAI-compatible server (with --backend openai)"
    )
    parser.add_argument("--target", choices=sorted(TARGETS), default="recommended")
    parser.add_argument(
        "--n-samples",
        type=int,
        default=4000,
        help="reviews to use (stratified subset); 0 = all 23,486",
    )
    parser.add_argument("--cv", type=int, default=3, help="cross-validation folds")
    parser.add_argument("--n-estimators", type=int, default=150, help="trees per forest")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel grid-search jobs")
    parser.add_argument(
        "--output",
        default="clothing_reviews_model.joblib",
        help="where to save the fitted pipeline",
    )
    parser.add_argument("--random-state", type=int, default=0)
    return parser.parse_args(argv)


def make_embedder(args):
    if args.backend == "local":
        from skembed import LocalEmbeddingTransformer

        return LocalEmbeddingTransformer(on_invalid_text="zero")
    from skembed import OpenAIEmbeddingTransformer

    return OpenAIEmbeddingTransformer(
        model=args.model,
        dimensions=args.dimensions,
        base_url=args.base_url,
        on_invalid_text="zero",
    )


def make_model(text_step, args, regression):
    """[text | scaled numbers | one-hot categories] -> random forest; text may be None."""
    columns = [
        ("numeric", StandardScaler(), NUMERIC),
        ("category", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
    ]
    if text_step is not None:
        columns.insert(0, ("text", text_step, "review"))
    forest = (RandomForestRegressor if regression else RandomForestClassifier)(
        n_estimators=args.n_estimators, random_state=args.random_state, n_jobs=1
    )
    return Pipeline([("features", ColumnTransformer(columns)), ("forest", forest)])


def load(args):
    data = load_clothing_reviews(n_samples=args.n_samples or None, random_state=args.random_state)
    # Title and body together; a review with neither becomes "" and, under the
    # on_invalid_text="zero" policy, an all-zero vector (instead of the word "nan").
    data["review"] = (data["title"].fillna("") + ". " + data["review_text"].fillna("")).str.strip(
        " ."
    )
    data[CATEGORICAL] = data[CATEGORICAL].fillna("unknown")
    return data


def main(argv=None):
    args = parse_args(argv)
    target, scoring = TARGETS[args.target]
    regression = args.target == "rating"
    data = load(args)
    y = data[target].to_numpy()
    train, test = train_test_split(
        data,
        test_size=0.2,
        random_state=args.random_state,
        stratify=None if regression else y,
    )
    print(
        f"{len(data)} reviews ({len(train)} to train and cross-validate, {len(test)} held "
        f"out); target {target!r}, scored by {scoring}"
    )

    embedder = make_embedder(args)
    start = time.perf_counter()
    # Embedding once up front shows a progress bar and fills the cache; every fold and
    # candidate of the grid search below then reads its vectors from the cache.
    embedder.set_params(verbose=True).transform(data["review"])
    embedder.set_params(verbose=False)
    print(
        f"embedded {len(data)} reviews in {time.perf_counter() - start:.1f} s "
        f"({type(embedder).__name__}; cached for the next run)"
    )

    splitter = (KFold if regression else StratifiedKFold)(
        args.cv, shuffle=True, random_state=args.random_state
    )
    grid = {"forest__min_samples_leaf": [1, 5], "forest__max_features": ["sqrt", 0.3]}
    candidates = {
        "tabular only": make_model(None, args, regression),
        "TF-IDF text + tabular": make_model(
            TfidfVectorizer(min_df=2, max_features=5000, sublinear_tf=True), args, regression
        ),
        "embeddings + tabular": make_model(embedder, args, regression),
    }
    print(f"\n{args.cv}-fold cross-validated {scoring}, each model tuned over {grid}:")
    searches = {}
    for name, model in candidates.items():
        start = time.perf_counter()
        search = GridSearchCV(model, grid, scoring=scoring, cv=splitter, n_jobs=args.n_jobs)
        search.fit(train, train[target])
        searches[name] = search
        folds = np.array(
            [search.cv_results_[f"split{i}_test_score"][search.best_index_] for i in range(args.cv)]
        )
        print(
            f"  {name:24s} {folds.mean():+.3f} ± {folds.std():.3f}   "
            f"(best {search.best_params_}; {time.perf_counter() - start:.0f} s)"
        )

    best = searches["embeddings + tabular"].best_estimator_
    held_out = best.score(test, test[target]) if regression else None
    joblib.dump(best, args.output)
    print(f"\nsaved the tuned embeddings pipeline to {args.output}")
    if held_out is not None:
        print(f"held-out R^2: {held_out:.3f}")

    # A new process: nothing in memory, only the file (and the cache on disk).
    rows = test.head(5)
    rows.to_pickle(args.output + ".rows.pkl")
    code = textwrap.dedent(f"""
        import joblib, pandas as pd
        model = joblib.load({args.output!r})
        rows = pd.read_pickle({args.output + ".rows.pkl"!r})
        print(" ".join(str(p) for p in model.predict(rows)))
    """)
    reloaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    ).stdout.split()
    os.remove(args.output + ".rows.pkl")
    here = [str(p) for p in best.predict(rows)]
    print(f"predictions of the reloaded pipeline (new process): {reloaded}")
    print(f"predictions in this process:                         {here}")
    print(f"true values:                                         {rows[target].tolist()}")
    if reloaded != here:
        raise SystemExit("The reloaded pipeline predicts differently!")
    return searches


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    main()
