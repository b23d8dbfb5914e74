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
# News articles
# -------------
import matplotlib.pyplot as plt
import numpy as np

from skembed.datasets import load_bbc_news, load_clothing_reviews
from skembed.neighbors import cosine_diversity

rng = np.random.RandomState(0)
news = load_bbc_news(n_samples=500, random_state=0)
X = embedder.fit_transform(news["headline"] + ". " + news["text"].str.split("\n").str[0])
topics = news["topic"].to_numpy()
print(f"diversity of all {len(news)} articles: {cosine_diversity(X):.3f}")
news_sets = {}  # name -> (diversity of the set, of a random mix of the same size)
for topic in np.unique(topics):
    mine = np.flatnonzero(topics == topic)
    mixed = rng.choice(len(news), size=len(mine), replace=False)
    news_sets[topic] = cosine_diversity(X[mine]), cosine_diversity(X[mixed])
    print(f"  {topic:14s} {news_sets[topic][0]:.3f}   (a random mix: {news_sets[topic][1]:.3f})")

# %%
# Paraphrases of one sentence are the least diverse set
# -----------------------------------------------------
paraphrases = [
    "The central bank raised interest rates by a quarter point.",
    "Interest rates went up 0.25% after the central bank's decision.",
    "The bank increased its base rate by 25 basis points.",
    "Borrowing costs rise as the central bank lifts rates slightly.",
]
mixed = rng.choice(len(news), size=len(paraphrases), replace=False)
news_sets["4 paraphrases"] = (
    cosine_diversity(embedder.transform(paraphrases)),
    cosine_diversity(X[mixed]),
)
print(f"{len(paraphrases)} paraphrases: {news_sets['4 paraphrases'][0]:.3f}")

# %%
# Reviews of one product against reviews of many products
# -------------------------------------------------------
reviews = load_clothing_reviews(n_samples=1000, random_state=0)
reviews = reviews.dropna(subset=["review_text"]).reset_index(drop=True)
texts = (reviews["title"].fillna("") + ". " + reviews["review_text"].fillna("")).str.strip(" .")
R = embedder.transform(texts)
per_product = reviews.groupby("clothing_id").indices
popular = sorted(per_product, key=lambda pid: -len(per_product[pid]))[:5]
review_sets = {}
for pid in popular:
    rows = per_product[pid]
    mixed = rng.choice(len(reviews), size=len(rows), replace=False)
    name = f"{reviews['class_name'][rows[0]]} #{pid} ({len(rows)})"
    review_sets[name] = cosine_diversity(R[rows]), cosine_diversity(R[mixed])
    print(f"  product {name}: {review_sets[name][0]:.3f} (random: {review_sets[name][1]:.3f})")

# %%
# Each set against a random set of the same size
# ----------------------------------------------
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, sets, title in [
    (axes[0], news_sets, "BBC News: one topic, paraphrases"),
    (axes[1], review_sets, "Clothing reviews: one product (its reviews)"),
]:
    names = list(sets)
    positions = np.arange(len(names))
    ax.barh(positions - 0.2, [sets[n][0] for n in names], 0.4, label="the set")
    ax.barh(positions + 0.2, [sets[n][1] for n in names], 0.4, label="random, same size")
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.4 * max(max(pair) for pair in sets.values()))  # room for the legend
    ax.set_xlabel("cosine_diversity (mean pairwise cosine distance)")
    ax.set_title(title)
    ax.legend(loc="lower right")
fig.tight_layout()
plt.show()
