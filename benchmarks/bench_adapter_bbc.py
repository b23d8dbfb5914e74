"""Pair accuracy of the cosine-threshold classifier before and after LinearEmbeddingAdapter.

A replication, on local embeddings, of the OpenAI cookbook "Customizing embeddings"
(SNLI pairs, text-embedding-ada-002: test accuracy 88.8% +- 2.4 -> 93.6% +- 1.9 after
training the matrix). Here the pairs are BBC News texts: +1 when two articles share
a topic, -1 when they do not.

Protocol, for each seed:

1. ``load_bbc_news()``, without the articles whose body repeats an earlier one (a repeat
   on both sides of the split would leak); the headline (default) or the first
   sentence of each article is embedded once by ``LocalEmbeddingTransformer``
   (all-MiniLM-L6-v2, int8 ONNX).
2. The *articles* are split in two halves stratified by topic, so that no text of a
   test pair was seen in training. From each half, ``--n-pairs`` pairs of distinct
   articles are drawn, half same-topic and half different-topic.
3. The classifier predicts "similar" when the cosine of a pair is at least a threshold,
   the one that maximises the accuracy on the training pairs. Its accuracy on the
   test pairs is reported for the raw embeddings (baseline) and after an adapter fitted
   on the training half: from the training pairs with ``fit_pairs`` (the cookbook's
   setup), and from the topics of the training articles with ``fit``.

The script prints the mean and standard deviation over the seeds, and the error rate of
each adapter relative to the baseline's (a ratio measured in the same run).

Usage::

    python benchmarks/bench_adapter_bbc.py [--text headline|first-sentence]
        [--n-pairs 2000] [--seeds 5] [--alpha 0.01]
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
from sklearn.model_selection import train_test_split


def load_texts(kind):
    """One text per distinct BBC article (headline or first sentence), and its topic."""
    from skembed.datasets import load_bbc_news

    news = load_bbc_news().drop_duplicates("text").reset_index(drop=True)
    if kind == "headline":
        texts = news["headline"]
    else:
        texts = news["text"].map(lambda body: re.split(r"(?<=[.!?])\s+", body.strip())[0])
    return texts.tolist(), news["topic"].to_numpy()


def embed(texts):
    from skembed import LocalEmbeddingTransformer

    return LocalEmbeddingTransformer().fit_transform(texts)


def draw_pairs(articles, topics, n_pairs, rng):
    """``n_pairs`` pairs of distinct articles, half same-topic (+1), half not (-1)."""
    half = n_pairs // 2
    left, right = rng.choice(articles, size=(2, 8 * n_pairs))
    distinct = left != right
    left, right = left[distinct], right[distinct]
    same = topics[left] == topics[right]
    if same.sum() < half or (~same).sum() < half:
        raise ValueError(f"too few articles to draw {n_pairs} balanced pairs")
    left = np.r_[left[same][:half], left[~same][:half]]
    right = np.r_[right[same][:half], right[~same][:half]]
    return left, right, np.where(topics[left] == topics[right], 1.0, -1.0)


def pair_cosines(vectors, left, right):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.sum(unit[left] * unit[right], axis=1)


def best_threshold(cosines, target):
    """The cosine threshold (predict +1 at or above it) most accurate on these pairs."""
    order = np.argsort(cosines)
    sorted_cos, positive = cosines[order], target[order] > 0
    # Threshold at sorted_cos[i]: pairs i.. are predicted similar.
    correct = np.cumsum(~positive) - ~positive + positive[::-1].cumsum()[::-1]
    return sorted_cos[int(np.argmax(correct))]


def threshold_accuracy(train, test):
    """Accuracy on ``test`` of the threshold that is best on ``train``; each is (cos, y)."""
    threshold = best_threshold(*train)
    cosines, target = test
    return np.mean((cosines >= threshold) == (target > 0))


def run_seed(vectors, topics, seed, n_pairs, alpha):
    from skembed import LinearEmbeddingAdapter

    articles = np.arange(len(topics))
    train, test = train_test_split(articles, test_size=0.5, stratify=topics, random_state=seed)
    rng = np.random.RandomState(seed)
    train_pairs = draw_pairs(train, topics, n_pairs, rng)
    test_pairs = draw_pairs(test, topics, n_pairs, rng)

    def accuracy(mapped):
        (a, b, y), (c, d, z) = train_pairs, test_pairs
        return threshold_accuracy((pair_cosines(mapped, a, b), y), (pair_cosines(mapped, c, d), z))

    left, right, target = train_pairs
    start = time.perf_counter()
    pairs_adapter = LinearEmbeddingAdapter(alpha=alpha).fit_pairs(
        vectors[left], vectors[right], target
    )
    pairs_seconds = time.perf_counter() - start
    start = time.perf_counter()
    labels_adapter = LinearEmbeddingAdapter(alpha=alpha).fit(vectors[train], topics[train])
    labels_seconds = time.perf_counter() - start
    return {
        "baseline": accuracy(vectors),
        "fit_pairs": accuracy(pairs_adapter.transform(vectors)),
        "fit (topics)": accuracy(labels_adapter.transform(vectors)),
        "fit_pairs seconds": pairs_seconds,
        "fit seconds": labels_seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", choices=["headline", "first-sentence"], default="headline")
    parser.add_argument("--n-pairs", type=int, default=2000, help="per half (train, test)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.01)
    args = parser.parse_args()

    texts, topics = load_texts(args.text)
    start = time.perf_counter()
    vectors = np.asarray(embed(texts), dtype=np.float32)
    print(
        f"{len(texts)} articles ({args.text}), {vectors.shape[1]}-d, embedded in "
        f"{time.perf_counter() - start:.1f} s; {args.n_pairs} train and test pairs per seed"
    )
    runs = [run_seed(vectors, topics, seed, args.n_pairs, args.alpha) for seed in range(args.seeds)]
    baseline = np.array([run["baseline"] for run in runs])
    print(f"held-out pair accuracy over {args.seeds} seeds (mean +- std), alpha={args.alpha}")
    for name in ["baseline", "fit_pairs", "fit (topics)"]:
        accuracy = np.array([run[name] for run in runs])
        line = f"  {name:<13} {100 * accuracy.mean():5.1f}% +- {100 * accuracy.std():.1f}"
        if name != "baseline":
            seconds = np.mean([run[f"{name.split()[0]} seconds"] for run in runs])
            error_ratio = np.mean((1 - accuracy) / (1 - baseline))
            line += (
                f"   gain {100 * np.mean(accuracy - baseline):+.1f} points, error rate "
                f"x{error_ratio:.2f} of baseline, fit {seconds:.1f} s"
            )
        print(line)


if __name__ == "__main__":
    main()
