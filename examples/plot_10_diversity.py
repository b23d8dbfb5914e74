"""
Measuring the diversity of a set of texts
=========================================

:func:`skembed.neighbors.cosine_diversity` is the mean cosine distance between the
embeddings of every pair of texts in a set: near 0 when the texts all say the same
thing, higher when they spread over many subjects. Use it to compare the variety of
answers, reviews, search results or generated texts.

On BBC News articles: the diversity of each topic is lower than that of a random
mix of the same size, and a set of near-paraphrases is lower still. On clothing
reviews: reviews of one product against reviews of random products.
"""

# %%
# News articles
# -------------
import numpy as np
from _backend import describe, make_embedder, make_parser, parse_args

from skembed.datasets import load_bbc_news, load_clothing_reviews
from skembed.neighbors import cosine_diversity

parser = make_parser(__doc__)
parser.add_argument("--n-samples", type=int, default=500, help="news articles to use")
args = parse_args(parser)
rng = np.random.RandomState(0)

news = load_bbc_news(n_samples=args.n_samples, random_state=0)
embedder = make_embedder(args)
X = embedder.fit_transform(news["headline"] + ". " + news["text"].str.split("\n").str[0])
topics = news["topic"].to_numpy()
print(f"{len(news)} articles embedded with {describe(embedder)}")
print(f"\ndiversity of all {len(news)} articles: {cosine_diversity(X):.3f}")
for topic in np.unique(topics):
    mine = np.flatnonzero(topics == topic)
    mixed = rng.choice(len(news), size=len(mine), replace=False)
    print(
        f"  {topic:14s} {cosine_diversity(X[mine]):.3f}   "
        f"(a random mix of {len(mine)} articles: {cosine_diversity(X[mixed]):.3f})"
    )

# %%
# Paraphrases of one sentence are the least diverse set
# -----------------------------------------------------
paraphrases = [
    "The central bank raised interest rates by a quarter point.",
    "Interest rates went up 0.25% after the central bank's decision.",
    "The bank increased its base rate by 25 basis points.",
    "Borrowing costs rise as the central bank lifts rates slightly.",
]
print(f"\n{len(paraphrases)} paraphrases: {cosine_diversity(embedder.transform(paraphrases)):.3f}")

# %%
# Reviews of one product against reviews of many products
# -------------------------------------------------------
reviews = load_clothing_reviews(n_samples=1000, random_state=0)
reviews = reviews.dropna(subset=["review_text"]).reset_index(drop=True)
texts = (reviews["title"].fillna("") + ". " + reviews["review_text"].fillna("")).str.strip(" .")
R = embedder.transform(texts)
per_product = reviews.groupby("clothing_id").indices
popular = sorted(per_product, key=lambda pid: -len(per_product[pid]))[:5]
print("\nreviews of one product, and of as many random reviews:")
for pid in popular:
    rows = per_product[pid]
    mixed = rng.choice(len(reviews), size=len(rows), replace=False)
    print(
        f"  product {pid} ({reviews['class_name'][rows[0]]}, {len(rows)} reviews): "
        f"{cosine_diversity(R[rows]):.3f}   (random reviews: {cosine_diversity(R[mixed]):.3f})"
    )
