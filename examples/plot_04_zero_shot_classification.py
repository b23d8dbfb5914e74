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
unlabelled articles they attract), against chance (1 in 5).
"""

# %%
# Data
# ----
import numpy as np
from _backend import describe, make_embedder, make_parser, parse_args

from skembed import ZeroShotEmbeddingClassifier
from skembed.datasets import load_bbc_news

parser = make_parser(__doc__)
parser.add_argument("--n-samples", type=int, default=500, help="articles to classify")
args = parse_args(parser)

news = load_bbc_news(n_samples=args.n_samples, random_state=0)
texts = news["headline"] + ". " + news["text"].str.split("\n").str[0]
embedder = make_embedder(args)
embedder.transform(texts)  # fills the cache; every classifier below reuses it
print(f"{len(news)} articles, embedded with {describe(embedder)}")

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
for name, params in settings.items():
    row = []
    for transductive in (False, True):
        model = ZeroShotEmbeddingClassifier(
            embedder=embedder, transductive=transductive, **params
        ).fit(texts)
        row.append(np.mean(model.predict(texts) == news["topic"]))
    print(f"{name:14s} {row[0]:10.3f} {row[1]:20.3f}")

# %%
# A few predictions
# -----------------
# The last model: descriptions, adapted.
sample = np.random.RandomState(1).choice(len(news), size=5, replace=False)
proba = model.predict_proba(texts[sample])
for row, p in zip(sample, proba, strict=True):
    print(
        f"  {news['headline'][row][:45]:45s} -> {model.classes_[p.argmax()]:13s} "
        f"p={p.max():.2f} (true: {news['topic'][row]})"
    )
