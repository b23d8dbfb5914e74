"""
Customizing embeddings for a task with LinearEmbeddingAdapter
=============================================================

General-purpose embeddings place texts that matter to *your* task only loosely
together. :class:`~skembed.LinearEmbeddingAdapter` learns a matrix ``W`` such that,
after ``X @ W.T`` and re-normalisation, cosine similarity separates what the task
needs: the OpenAI cookbook's "Customizing embeddings" recipe (there: SNLI pairs and
ada-002, pair accuracy 88.8% -> 93.6%).

Here the pairs are BBC News articles, similar (+1) when they share a topic and
dissimilar (-1) otherwise:

1. the articles are split in two halves by topic, so that no text of a test pair was
   seen in training; from each half, pairs are drawn, half of them similar;
2. a pair is called similar when its cosine is above the threshold that is most
   accurate on the training pairs; we report that rule's accuracy on the test pairs
   for the raw embeddings (the baseline) and after an adapter fitted on the training
   half, from the training pairs (``fit_pairs``, the cookbook's setup) or from the
   training articles' topics (``fit``);
3. this is repeated over a few random splits (mean and standard deviation).
"""

# %%
# Embed the articles
# ------------------
import numpy as np
from _backend import describe, make_embedder, make_parser, parse_args
from sklearn.model_selection import train_test_split

from skembed import LinearEmbeddingAdapter
from skembed.datasets import load_bbc_news

parser = make_parser(__doc__)
parser.add_argument("--n-samples", type=int, default=500, help="articles to use")
parser.add_argument("--n-pairs", type=int, default=1000, help="pairs per half")
parser.add_argument("--seeds", type=int, default=3, help="random splits")
parser.add_argument("--alpha", type=float, default=0.01, help="adapter regularisation")
args = parse_args(parser)

news = load_bbc_news(n_samples=args.n_samples, random_state=0)
news["lead"] = news["headline"] + ". " + news["text"].str.split("\n").str[0]
# The corpus repeats some articles; a repeat on both sides of the split would leak.
news = news.drop_duplicates("text").reset_index(drop=True)
embedder = make_embedder(args)
X = embedder.fit_transform(news["lead"])
topics = news["topic"].to_numpy()
print(f"{len(news)} distinct articles embedded with {describe(embedder)}")


# %%
# Pairs and the threshold rule
# ----------------------------
def draw_pairs(articles, n_pairs, rng):
    """``n_pairs`` pairs of distinct articles, half same-topic (+1), half not (-1)."""
    left, right = rng.choice(articles, size=(2, 8 * n_pairs))
    keep = left != right
    left, right = left[keep], right[keep]
    same = topics[left] == topics[right]
    half = n_pairs // 2
    left = np.r_[left[same][:half], left[~same][:half]]
    right = np.r_[right[same][:half], right[~same][:half]]
    return left, right, np.where(topics[left] == topics[right], 1.0, -1.0)


def cosines(vectors, left, right):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.sum(unit[left] * unit[right], axis=1)


def pair_accuracy(vectors, train_pairs, test_pairs):
    """Test accuracy of the cosine threshold that is most accurate on the train pairs."""
    train_cos, train_y = cosines(vectors, *train_pairs[:2]), train_pairs[2]
    candidates = np.unique(train_cos)
    correct = [np.mean((train_cos >= t) == (train_y > 0)) for t in candidates]
    threshold = candidates[int(np.argmax(correct))]
    return np.mean((cosines(vectors, *test_pairs[:2]) >= threshold) == (test_pairs[2] > 0))


# %%
# Fit the adapters and compare
# ----------------------------
results = {"raw embeddings": [], "fit_pairs": [], "fit (topics)": []}
for seed in range(args.seeds):
    rng = np.random.RandomState(seed)
    train, test = train_test_split(
        np.arange(len(news)), test_size=0.5, stratify=topics, random_state=seed
    )
    train_pairs, test_pairs = (
        draw_pairs(train, args.n_pairs, rng),
        draw_pairs(test, args.n_pairs, rng),
    )
    left, right, target = train_pairs
    from_pairs = LinearEmbeddingAdapter(alpha=args.alpha).fit_pairs(X[left], X[right], target)
    from_topics = LinearEmbeddingAdapter(alpha=args.alpha).fit(X[train], topics[train])
    results["raw embeddings"].append(pair_accuracy(X, train_pairs, test_pairs))
    results["fit_pairs"].append(pair_accuracy(from_pairs.transform(X), train_pairs, test_pairs))
    results["fit (topics)"].append(pair_accuracy(from_topics.transform(X), train_pairs, test_pairs))

print(
    f"held-out pair accuracy, {args.seeds} splits, {args.n_pairs} test pairs each (chance: 0.50):"
)
for name, accuracy in results.items():
    print(f"  {name:15s} {100 * np.mean(accuracy):5.1f}% ± {100 * np.std(accuracy):.1f}")
