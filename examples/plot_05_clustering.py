"""
Clustering news articles and describing each cluster
====================================================

Group 500 BBC News articles with :class:`~sklearn.cluster.KMeans` on their
embeddings, and describe each cluster by its most central articles (those closest to
its centre). The articles carry a topic that KMeans never sees, so we can score how
well the clusters recover it (adjusted Rand index: 0 for random labels, 1 for a
perfect match), and compare with KMeans on TF-IDF vectors of the same texts.
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
# Embed and cluster
# -----------------
# Embeddings are unit-norm, so Euclidean KMeans groups by cosine similarity.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score

from skembed.datasets import load_bbc_news

N_CLUSTERS = 5
news = load_bbc_news(n_samples=500, random_state=0)
leads = news["headline"] + ". " + news["text"].str.split("\n").str[0]
X = embedder.fit_transform(leads)
kmeans = KMeans(n_clusters=N_CLUSTERS, n_init=10, random_state=0).fit(X)
clusters = kmeans.labels_

# %%
# Describe each cluster by its most central articles
# --------------------------------------------------
distance_to_centre = kmeans.transform(X)
for cluster in range(N_CLUSTERS):
    members = np.flatnonzero(clusters == cluster)
    by_centrality = members[np.argsort(distance_to_centre[members, cluster])]
    # The corpus repeats some articles: show three distinct headlines.
    central = list(dict.fromkeys(news["headline"][by_centrality]))[:3]
    topics = news["topic"][members].value_counts()
    print(
        f"\ncluster {cluster}: {len(members)} articles, "
        f"mostly {topics.index[0]} ({topics.iloc[0] / len(members):.0%})"
    )
    for headline in central:
        print(f"  {headline}")

# %%
# Score against the topics
# ------------------------
tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(leads)
tfidf_clusters = KMeans(n_clusters=N_CLUSTERS, n_init=10, random_state=0).fit_predict(tfidf)
shuffled = np.random.RandomState(0).permutation(clusters)
ari = {
    "KMeans on embeddings": adjusted_rand_score(news["topic"], clusters),
    "KMeans on TF-IDF": adjusted_rand_score(news["topic"], tfidf_clusters),
    "random clusters": adjusted_rand_score(news["topic"], shuffled),
}
print("\nadjusted Rand index against the topics (1 = perfect):")
for name, score in ari.items():
    print(f"  {name:22s} {score:.2f}")

# %%
# Clusters against the hidden topics
# ----------------------------------
# Left, how many articles of each topic (columns) fall in each cluster (rows); a
# good clustering puts one bright cell per row.
table = pd.crosstab(pd.Series(clusters, name="cluster"), news["topic"])
fig, (heat, bars) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=[3, 2])
counts = table.to_numpy()
heat.imshow(counts, cmap="Blues")
for (row, column), count in np.ndenumerate(counts):
    colour = "white" if count > counts.max() / 2 else "black"
    heat.text(column, row, count, ha="center", va="center", color=colour)
heat.set_xticks(range(table.shape[1]), table.columns, rotation=30)
heat.set_yticks(range(table.shape[0]), [f"cluster {c}" for c in table.index])
heat.set_title("Articles per cluster and topic (embeddings)")
bars.barh(list(ari), list(ari.values()))
bars.invert_yaxis()
bars.set_xlim(0, 1)
bars.set_xlabel("adjusted Rand index with the topics")
fig.tight_layout()
plt.show()
