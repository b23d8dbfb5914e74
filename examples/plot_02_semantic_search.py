"""
Semantic search over news articles
==================================

Embed the opening of 500 BBC News articles (headline and first sentence), embed a
query the same way, and return the articles whose vectors are closest by cosine
similarity, with :class:`~skembed.neighbors.CosineNearestNeighbors`. The query need
not share any word with the article it finds.

How well does it work? Each article's *second* paragraph (text the index never saw)
is used as a query for its own article: we draw how often the article is among the
first *k* results (recall@k), against what picking at random would give.
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
# Index the articles
# ------------------
# The vectors are unit-norm, so cosine similarity is a dot product; the index is exact.
import matplotlib.pyplot as plt
import numpy as np

from skembed.datasets import load_bbc_news
from skembed.neighbors import CosineNearestNeighbors

news = load_bbc_news(n_samples=500, random_state=0)
paragraphs = news["text"].str.split("\n").str
leads = news["headline"] + ". " + paragraphs[0]
X = embedder.fit_transform(leads)
index = CosineNearestNeighbors(n_neighbors=3).fit(X)
print(f"{len(news)} articles indexed: {X.shape[1]}-d vectors")

# %%
# Free-text queries
# -----------------
queries = [
    "central bank raises interest rates to fight inflation",
    "striker injured before the cup final",
    "new mobile phone virus spreads",
    "film wins prizes at awards ceremony",
]
distances, indices = index.kneighbors(embedder.transform(queries))
for query, dist, rows in zip(queries, distances, indices, strict=True):
    print(f"\n{query!r}")
    for d, row in zip(dist, rows, strict=True):
        print(f"  similarity {1 - d:.2f}  [{news['topic'][row]}] {news['headline'][row]}")

# %%
# Find an article from a passage of it
# ------------------------------------
# The second paragraph of an article is a query whose right answer we know.
rng = np.random.RandomState(0)
second = paragraphs[2].fillna("")  # paragraphs are separated by blank lines
has_second = np.flatnonzero(second.str.len() > 40)
asked = rng.choice(has_second, size=min(200, len(has_second)), replace=False)
ks = np.arange(1, 21)
_, found = index.kneighbors(embedder.transform(second[asked]), n_neighbors=ks[-1])
rank_hit = found == asked[:, None]  # True where the article itself was returned
recall = [rank_hit[:, :k].any(axis=1).mean() for k in ks]
print(f"\n{len(asked)} passages searched among {len(news)} articles:")
print(f"  recall@1  {recall[0]:.2f}   (random: {1 / len(news):.3f})")
print(f"  recall@10 {recall[9]:.2f}   (random: {10 / len(news):.3f})")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(ks, recall, "o-", label="embedding search")
ax.plot(ks, ks / len(news), ":", color="grey", label="random")
ax.set_xticks([1, 5, 10, 15, 20])
ax.set_ylim(0, 1)
ax.set_xlabel("k (results read)")
ax.set_ylabel("recall@k")
ax.set_title("Article found from its second paragraph")
ax.legend()
fig.tight_layout()
plt.show()
