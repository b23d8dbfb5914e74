"""
Recommendation: "more like this"
================================

Under an article a reader has just read, show the articles most similar to it: the
nearest neighbours of its embedding, with
:class:`~skembed.neighbors.CosineNearestNeighbors` fitted on the whole catalogue
(``kneighbors()`` without ``X`` leaves each article out of its own list).

No clicks are needed, so it works for items nobody has read yet. As a check, we
measure how many recommendations share the article's topic, against recommending
articles at random.
"""

# %%
# Embed the catalogue
# -------------------
import numpy as np
from _backend import describe, make_embedder, make_parser, parse_args

from skembed.datasets import load_bbc_news
from skembed.neighbors import CosineNearestNeighbors

parser = make_parser(__doc__)
parser.add_argument("--n-samples", type=int, default=500, help="articles in the catalogue")
parser.add_argument("--n-recommendations", type=int, default=5)
args = parse_args(parser)

news = load_bbc_news(n_samples=args.n_samples, random_state=0)
embedder = make_embedder(args)
X = embedder.fit_transform(news["headline"] + ". " + news["text"].str.split("\n").str[0])
print(f"{len(news)} articles embedded with {describe(embedder)}")

# %%
# Recommend
# ---------
recommender = CosineNearestNeighbors(n_neighbors=args.n_recommendations).fit(X)
distances, similar = recommender.kneighbors()  # every article, itself left out

for article in [0, 150, 400]:
    print(f"\nbecause you read: [{news['topic'][article]}] {news['headline'][article]}")
    for d, row in zip(distances[article, :3], similar[article, :3], strict=True):
        print(f"  similarity {1 - d:.2f}  [{news['topic'][row]}] {news['headline'][row]}")

# %%
# Near duplicates
# ---------------
# The corpus publishes some articles twice: a pair at (almost) zero distance is a
# repeat, not a recommendation. A real service would drop them from the lists.
repeats = {
    tuple(sorted((a, int(b)))) for a, b in enumerate(similar[:, 0]) if distances[a, 0] < 0.02
}
print(f"\n{len(repeats)} near-duplicate pairs (cosine distance < 0.02), e.g.:")
for a, b in sorted(repeats)[:2]:
    print(f"  {news['headline'][a]!r} = {news['headline'][b]!r}")

# %%
# Do the recommendations stay on topic?
# -------------------------------------
# A random recommendation shares the topic with probability sum(share_of_topic**2).
topics = news["topic"].to_numpy()
on_topic = np.mean(topics[similar] == topics[:, None])
shares = news["topic"].value_counts(normalize=True).to_numpy()
print(
    f"\nrecommendations on the article's topic: {on_topic:.2f} "
    f"(random: {np.sum(shares**2):.2f}), {args.n_recommendations} per article"
)
