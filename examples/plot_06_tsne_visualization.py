"""
Visualising embeddings in 2-D with t-SNE
========================================

Project the 384-d (or 1536-d) embeddings of 500 BBC News articles to two dimensions
with :class:`~sklearn.manifold.TSNE` and draw them, coloured by topic: articles on
the same subject land together, although the model never saw a topic label.

To put a number on the picture, we measure how often a point's five nearest
neighbours *in the 2-D map* share its topic, against the chance of that.
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
# Embed and project
# -----------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from skembed.datasets import load_bbc_news

news = load_bbc_news(n_samples=500, random_state=0)
X = embedder.fit_transform(news["headline"] + ". " + news["text"].str.split("\n").str[0])
# Cosine distances between unit vectors; PCA initialisation keeps the layout stable;
# 500 iterations (half the default) are enough for a few hundred points.
points = TSNE(
    n_components=2, metric="cosine", init="pca", perplexity=30, max_iter=500, random_state=0
).fit_transform(X)

# %%
# How well does the map keep the topics apart?
# --------------------------------------------
topics = news["topic"].to_numpy()
_, neighbours = NearestNeighbors(n_neighbors=6).fit(points).kneighbors(points)
same_topic = np.mean(topics[neighbours[:, 1:]] == topics[:, None])
shares = news["topic"].value_counts(normalize=True).to_numpy()
print(
    f"5 nearest neighbours in the 2-D map sharing the topic: {same_topic:.2f} "
    f"(chance: {np.sum(shares**2):.2f})"
)

# %%
# Draw
# ----
fig, ax = plt.subplots(figsize=(7, 6))
for topic in np.unique(topics):
    mine = topics == topic
    ax.scatter(points[mine, 0], points[mine, 1], s=12, alpha=0.8, label=topic)
ax.set_title(
    f"t-SNE of {len(news)} BBC News articles: {same_topic:.0%} of the 5 nearest "
    "neighbours share the topic"
)
ax.set_xticks([])
ax.set_yticks([])
ax.legend(title="topic (not used by t-SNE)")
fig.tight_layout()
plt.show()
