"""
Recommendation: "more like this"
================================

Under an article a reader has just read, show the articles most similar to it: the
nearest neighbours of its embedding, with
:class:`~skembed.neighbors.CosineNearestNeighbors` fitted on the whole catalogue
(``kneighbors()`` without ``X`` leaves each article out of its own list).

No clicks are needed, so it works for items nobody has read yet. As a check, we
measure how many recommendations share the article's topic, rank by rank, against
recommending articles at random.
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
    embedder = OpenAIEmbeddingTransformer(model="text-embedding-3-small")
else:
    embedder = LocalEmbeddingTransformer()

# %%
# Embed the catalogue and recommend
# ---------------------------------
import matplotlib.pyplot as plt
import numpy as np

from skembed.datasets import load_bbc_news
from skembed.neighbors import CosineNearestNeighbors

news = load_bbc_news(n_samples=500, random_state=0)
X = embedder.fit_transform(news["headline"] + ". " + news["text"].str.split("\n").str[0])
recommender = CosineNearestNeighbors(n_neighbors=10).fit(X)
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
on_topic_by_rank = np.mean(topics[similar] == topics[:, None], axis=0)
chance = np.sum(news["topic"].value_counts(normalize=True).to_numpy() ** 2)
print(
    f"\nrecommendations on the article's topic: {on_topic_by_rank[:5].mean():.2f} "
    f"of the first 5 (random: {chance:.2f})"
)

fig, (ranks, similarity) = plt.subplots(1, 2, figsize=(11, 4))
ranks.plot(np.arange(1, 11), on_topic_by_rank, "o-", label="nearest neighbours")
ranks.axhline(chance, color="grey", linestyle=":", label="random articles")
ranks.set_ylim(0, 1)
ranks.set_xlabel("rank of the recommendation")
ranks.set_ylabel("share on the article's topic")
ranks.set_title("On topic, rank by rank")
ranks.legend(loc="lower left")
similarity.hist(1 - distances[:, 0], bins=40)
similarity.axvline(0.98, color="red", linestyle="--", label="near duplicates (> 0.98)")
similarity.set_xlabel("cosine similarity of the first recommendation")
similarity.set_ylabel("articles")
similarity.set_title("How close the best match is")
similarity.legend()
fig.tight_layout()
plt.show()
