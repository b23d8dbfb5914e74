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
# Embed
# -----
import numpy as np
import pandas as pd
from _backend import describe, make_embedder, make_parser, parse_args
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score

from skembed.datasets import load_bbc_news

parser = make_parser(__doc__)
parser.add_argument("--n-samples", type=int, default=500, help="articles to cluster")
parser.add_argument("--n-clusters", type=int, default=5)
args = parse_args(parser)

news = load_bbc_news(n_samples=args.n_samples, random_state=0)
leads = news["headline"] + ". " + news["text"].str.split("\n").str[0]
embedder = make_embedder(args)
X = embedder.fit_transform(leads)
print(f"{len(news)} articles embedded with {describe(embedder)}")

# %%
# Cluster
# -------
# Embeddings are unit-norm, so Euclidean KMeans groups by cosine similarity.
kmeans = KMeans(n_clusters=args.n_clusters, n_init=10, random_state=0).fit(X)
clusters = kmeans.labels_

# %%
# Describe each cluster by its most central articles
# --------------------------------------------------
distance_to_centre = kmeans.transform(X)
for cluster in range(args.n_clusters):
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

print("\nclusters (rows) against the hidden topics (columns):")
print(pd.crosstab(pd.Series(clusters, name="cluster"), news["topic"]))

# %%
# Score against the topics
# ------------------------
tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(leads)
tfidf_clusters = KMeans(n_clusters=args.n_clusters, n_init=10, random_state=0).fit_predict(tfidf)
shuffled = np.random.RandomState(0).permutation(clusters)
print(
    f"\nadjusted Rand index against the topics (1 = perfect):"
    f"\n  KMeans on embeddings {adjusted_rand_score(news['topic'], clusters):.2f}"
    f"\n  KMeans on TF-IDF     {adjusted_rand_score(news['topic'], tfidf_clusters):.2f}"
    f"\n  random clusters      {adjusted_rand_score(news['topic'], shuffled):.2f}"
)
