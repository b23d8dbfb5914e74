"""
Cold start: user and product vectors from review embeddings
===========================================================

A new product has no purchases and a new user has few, so collaborative filtering
cannot place them. Embeddings can: a *product vector* is the mean of the embeddings
of its reviews, and a *user vector* the mean of the vectors of the products she
liked. New products are then ranked for her by cosine similarity.

The clothing reviews have no user ids, so users are simulated: each likes one class
of clothing (dresses, knits, jeans...) and has liked five products of it. We
recommend ten products she has not seen and count how many are of her class (hit
rate), against recommending at random.
The same vectors serve the other cold start: a new product, with a few reviews or
just a description, is placed among the users at once.
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
# Product vectors
# ---------------
import matplotlib.pyplot as plt
import numpy as np

from skembed.datasets import load_clothing_reviews

N_USERS, HISTORY = 300, 5  # simulated users, products each one liked
reviews = load_clothing_reviews(n_samples=1000, random_state=0)
reviews = reviews.dropna(subset=["review_text", "class_name"]).reset_index(drop=True)
texts = (reviews["title"].fillna("") + ". " + reviews["review_text"]).str.strip(" .")
R = embedder.fit_transform(texts)

products = reviews.groupby("clothing_id")
P = np.vstack([R[rows].mean(axis=0) for rows in products.indices.values()])
P /= np.linalg.norm(P, axis=1, keepdims=True)
product_class = products["class_name"].agg(lambda c: c.mode()[0]).to_numpy()
product_department = products["department_name"].agg(lambda c: c.mode()[0]).to_numpy()
print(f"{len(reviews)} reviews embedded -> {len(P)} product vectors")

# %%
# Simulated users and their recommendations
# -----------------------------------------
rng = np.random.RandomState(0)
classes, counts = np.unique(product_class, return_counts=True)
liked_classes = classes[counts >= 2 * HISTORY]  # enough products to like and find
hits, expected, department_hits, department_expected = [], [], [], []
for _ in range(N_USERS):
    liked = rng.choice(liked_classes)
    history = rng.choice(np.flatnonzero(product_class == liked), HISTORY, replace=False)
    user = P[history].mean(axis=0)
    user /= np.linalg.norm(user)
    unseen = np.setdiff1d(np.arange(len(P)), history)
    top = unseen[np.argsort(-(P[unseen] @ user))[:10]]
    hits.append(np.mean(product_class[top] == liked))
    expected.append(np.mean(product_class[unseen] == liked))  # a random pick's hit rate
    # Classes are fine-grained (a "Fine gauge" fan may like sweaters): also count
    # recommendations in her class's department (Tops, Dresses, Bottoms...).
    department = product_department[history[0]]
    department_hits.append(np.mean(product_department[top] == department))
    department_expected.append(np.mean(product_department[unseen] == department))

print(f"{N_USERS} users over {len(liked_classes)} classes, {HISTORY} liked products each:")
print(
    f"  hit rate of the top 10 new products: {np.mean(hits):.2f} "
    f"(random recommendations: {np.mean(expected):.2f})"
)
print(
    f"  ... of the user's department: {np.mean(department_hits):.2f} "
    f"(random recommendations: {np.mean(department_expected):.2f})"
)

# %%
# Hit rates against random recommendations
# ----------------------------------------
fig, ax = plt.subplots(figsize=(6, 4))
positions = np.arange(2)
ax.bar(positions - 0.2, [np.mean(hits), np.mean(department_hits)], 0.4, label="embeddings")
ax.bar(
    positions + 0.2,
    [np.mean(expected), np.mean(department_expected)],
    0.4,
    label="random recommendations",
)
ax.set_xticks(positions, ["her class", "her department"])
ax.set_ylim(0, 1)
ax.set_ylabel("share of the top 10 new products")
ax.set_title(f"{N_USERS} simulated users, {HISTORY} liked products each")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# One user
# --------
print(f"\na user who liked {HISTORY} products of class {liked!r}; her top 5:")
for product in top[:5]:
    print(f"  similarity {P[product] @ user:.2f}  {product_class[product]}")
