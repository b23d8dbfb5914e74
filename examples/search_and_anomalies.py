"""
Semantic search, near duplicates and anomaly scores on news articles
====================================================================

Embed BBC News articles with the bundled local model, then use
:class:`~skembed.neighbors.CosineNearestNeighbors` to

- answer free-text queries (semantic search),
- find near-duplicate articles (the corpus contains repeats),
- score how unusual a text is (novelty detection), checked two ways: off-topic texts
  slipped among held-out articles, and a whole topic never seen during fit,
- measure the diversity of each topic.

Runs offline in about half a minute on two cores::

    python examples/search_and_anomalies.py --n-samples 500
"""

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from skembed import LocalEmbeddingTransformer
from skembed.datasets import load_bbc_news
from skembed.neighbors import CosineNearestNeighbors, cosine_diversity

QUERIES = [
    "central bank raises interest rates to fight inflation",
    "striker injured before the cup final",
    "new mobile phone virus spreads",
]

# Texts about none of the five topics (business, entertainment, politics, sport,
# tech), written for this example.
OFF_TOPIC = [
    "Knead the dough for ten minutes, then leave it to rise in a warm place.",
    "Water tomato plants at the base in the morning so the leaves stay dry.",
    "The comet will be visible low on the north-western horizon after sunset.",
    "Add a pinch of salt to the caramel once it turns a deep amber colour.",
    "Prune roses in late winter, cutting just above an outward-facing bud.",
    "A warm front will bring drizzle to western coasts by Thursday afternoon.",
    "Octopuses can change the colour and texture of their skin in a fraction of a second.",
    "Soak the chickpeas overnight and simmer them for an hour until tender.",
    "The hiking trail climbs through pine forest before reaching the alpine lake.",
    "Honeybees communicate the direction of flowers with a waggle dance.",
    "Sprinkle grated parmesan over the risotto just before serving.",
    "Migrating geese fly in a V formation to save energy.",
    "Repot the orchid when its roots start to grow over the edge of the pot.",
    "Jupiter's great red spot is a storm larger than the Earth.",
    "Whisk the egg whites until they form stiff peaks.",
    "The lighthouse keeper climbed 120 steps to light the lamp each evening.",
    "Sourdough starter needs feeding with flour and water every day.",
    "Frost is likely in sheltered valleys tonight under clear skies.",
    "Coral reefs grow only a few centimetres a year.",
    "Blanch the green beans, then plunge them into iced water.",
]


def article_lead(news):
    """Headline and first paragraph: short inputs that carry each article's subject."""
    lead = news["text"].str.split("\n").str[0].str.slice(0, 800)
    return (news["headline"] + ". " + lead).tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=500, help="articles to use")
    parser.add_argument("--n-neighbors", type=int, default=5)
    args = parser.parse_args()

    news = load_bbc_news(n_samples=args.n_samples, random_state=0)
    embedder = LocalEmbeddingTransformer()
    X = embedder.fit_transform(article_lead(news))
    topics = news["topic"].to_numpy()
    print(f"{len(news)} articles embedded: {X.shape[1]}-d, dtype {X.dtype}")

    # Semantic search over all articles.
    search = CosineNearestNeighbors(n_neighbors=3).fit(X)
    distances, indices = search.kneighbors(embedder.transform(QUERIES))
    for query, dist, idx in zip(QUERIES, distances, indices, strict=True):
        print(f"\nquery: {query!r}")
        for d, i in zip(dist, idx, strict=True):
            print(f"  {d:.3f}  [{topics[i]}] {news['headline'].iloc[i]}")

    # Near duplicates: each article's nearest other article.
    nearest, partner = search.kneighbors(n_neighbors=1)
    pairs = {tuple(sorted((i, int(p[0])))) for i, p in enumerate(partner) if nearest[i, 0] < 0.02}
    print(f"\n{len(pairs)} near-duplicate pairs (cosine distance < 0.02)")

    # Novelty 1: off-topic texts among held-out articles.
    train, test = train_test_split(np.arange(len(news)), test_size=0.2, random_state=0)
    detector = CosineNearestNeighbors(n_neighbors=args.n_neighbors).fit(X[train])
    scores = detector.score_samples(np.vstack([X[test], embedder.transform(OFF_TOPIC)]))
    is_normal = np.r_[np.ones(len(test)), np.zeros(len(OFF_TOPIC))]
    print(
        f"\noff-topic texts vs held-out articles: ROC-AUC {roc_auc_score(is_normal, scores):.3f} "
        f"({len(OFF_TOPIC)} off-topic, {len(test)} articles; higher score = more normal)"
    )
    print(f"  mean score: articles {scores[: len(test)].mean():.3f}, "
          f"off-topic {scores[len(test) :].mean():.3f}")

    # Novelty 2: a topic never seen during fit, one topic at a time.
    for unseen in np.unique(topics):
        seen = np.flatnonzero(topics != unseen)
        fit_rows, held_out = train_test_split(seen, test_size=0.2, random_state=0)
        novel = np.flatnonzero(topics == unseen)
        detector = CosineNearestNeighbors(n_neighbors=args.n_neighbors).fit(X[fit_rows])
        scores = detector.score_samples(X[np.r_[held_out, novel]])
        auc = roc_auc_score(np.r_[np.ones(len(held_out)), np.zeros(len(novel))], scores)
        print(f"unseen topic {unseen!r:16s} vs held-out seen topics: ROC-AUC {auc:.3f}")

    # Diversity: mean pairwise cosine distance within each topic and overall.
    print(f"\ndiversity of all articles: {cosine_diversity(X):.3f}")
    for topic in np.unique(topics):
        print(f"  {topic:14s} {cosine_diversity(X[topics == topic]):.3f}")


if __name__ == "__main__":
    main()
