"""
Zero-shot classification of news articles
=========================================

Classify BBC News articles into five topics with no training labels: each topic is
described in words, the descriptions and the articles are embedded by the same model,
and each article goes to the most similar description, with
:class:`~skembed.ZeroShotEmbeddingClassifier` (the OpenAI cookbook's zero-shot
classification).

We compare bare topic names, a template and longer descriptions, each without and
with the transductive adaptation of ``fit(X)`` (prototypes moved towards the
unlabelled articles they attract), against chance (1 in 5), and draw the confusion
matrix of the best one.
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
# Data
# ----
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from skembed import ZeroShotEmbeddingClassifier
from skembed.datasets import load_bbc_news

news = load_bbc_news(n_samples=500, random_state=0)
texts = news["headline"] + ". " + news["text"].str.split("\n").str[0]
embedder.transform(texts)  # fills the cache; every classifier below reuses it
print(f"{len(news)} articles")

# %%
# Three ways to describe the classes
# ----------------------------------
TOPICS = ["business", "entertainment", "politics", "sport", "tech"]
DESCRIPTIONS = {
    "business": "A news article about business, companies, markets and the economy.",
    "entertainment": "A news article about film, music, television and celebrities.",
    "politics": "A news article about politics, government, elections and parliament.",
    "sport": "A news article about sport: football, rugby, tennis and athletics.",
    "tech": "A news article about technology, computers, the internet and phones.",
}
settings = {
    "bare names": {"labels": TOPICS},
    "template": {"labels": TOPICS, "template": "This is a news article about {}."},
    "descriptions": {"labels": DESCRIPTIONS},
}

# %%
# Accuracy against chance
# -----------------------
# ``fit`` sees the texts but never the topics.
print(f"\naccuracy (chance: {1 / len(TOPICS):.2f})")
print(f"{'labels':14s} {'zero-shot':>10s} {'+ fit(X) adaptation':>20s}")
accuracy = {}
for name, params in settings.items():
    for transductive in (False, True):
        model = ZeroShotEmbeddingClassifier(
            embedder=embedder, transductive=transductive, **params
        ).fit(texts)
        accuracy[name, transductive] = np.mean(model.predict(texts) == news["topic"])
    print(f"{name:14s} {accuracy[name, False]:10.3f} {accuracy[name, True]:20.3f}")

# %%
# Where the best one errs
# -----------------------
# The last model: descriptions, adapted. Left, every setting's accuracy; right, the
# topics the last model confuses.
fig, (bars, matrix) = plt.subplots(1, 2, figsize=(12, 4.5))
positions = np.arange(len(settings))
for offset, transductive in [(-0.2, False), (0.2, True)]:
    bars.bar(
        positions + offset,
        [accuracy[name, transductive] for name in settings],
        width=0.4,
        label="+ fit(X) adaptation" if transductive else "zero-shot",
    )
bars.axhline(1 / len(TOPICS), color="grey", linestyle=":", label="chance")
bars.set_xticks(positions, list(settings))
bars.set_ylim(0, 1)
bars.set_ylabel("accuracy")
bars.set_title("How the classes are described")
bars.legend(loc="lower right")
ConfusionMatrixDisplay.from_predictions(
    news["topic"], model.predict(texts), ax=matrix, colorbar=False, xticks_rotation=30
)
matrix.set_title("descriptions + fit(X): true against predicted topic")
fig.tight_layout()
plt.show()

# %%
# A few predictions
# -----------------
sample = np.random.RandomState(1).choice(len(news), size=5, replace=False)
proba = model.predict_proba(texts[sample])
for row, p in zip(sample, proba, strict=True):
    print(
        f"  {news['headline'][row][:45]:45s} -> {model.classes_[p.argmax()]:13s} "
        f"p={p.max():.2f} (true: {news['topic'][row]})"
    )
