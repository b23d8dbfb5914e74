"""
Zero-shot classification of news articles
=========================================

Classify BBC News articles into five topics with no training labels: the topics are
described in words, embedded by the bundled local model, and each article goes to the
most similar description (the OpenAI cookbook's zero-shot classification). Prints the
accuracy of bare topic names, of a template, and of descriptive labels, each without
and with the transductive adaptation of ``fit(X)``, then a few predictions.

Run: ``python examples/zero_shot_classification.py [--n-samples 500]``
"""

from __future__ import annotations

import argparse

import numpy as np

from skembed import LocalEmbeddingTransformer, ZeroShotEmbeddingClassifier
from skembed.datasets import load_bbc_news

TOPICS = ["business", "entertainment", "politics", "sport", "tech"]
DESCRIPTIONS = {
    "business": "A news article about business, companies, markets and the economy.",
    "entertainment": "A news article about film, music, television and celebrities.",
    "politics": "A news article about politics, government, elections and parliament.",
    "sport": "A news article about sport: football, rugby, tennis and athletics.",
    "tech": "A news article about technology, computers, the internet and phones.",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--n-samples", type=int, default=0, help="stratified subset of articles; 0 = all 2,225"
    )
    args = parser.parse_args(argv)
    news = load_bbc_news(n_samples=args.n_samples or None)
    embedder = LocalEmbeddingTransformer(verbose=True)
    embedder.transform(news["text"])  # fills the cache; every model below reuses it
    print(f"{len(news)} BBC News articles, chance = {1 / len(TOPICS):.2f}\n")

    settings = {
        "bare names": {"labels": TOPICS},
        "template": {"labels": TOPICS, "template": "This is a news article about {}."},
        "descriptions": {"labels": DESCRIPTIONS},
    }
    print(f"{'labels':14s} {'zero-shot':>10s} {'+ fit(X) adaptation':>20s}")
    for name, params in settings.items():
        row = []
        for transductive in (False, True):
            model = ZeroShotEmbeddingClassifier(
                embedder=embedder, transductive=transductive, **params
            ).fit(news["text"])
            row.append(np.mean(model.predict(news["text"]) == news["topic"]))
        print(f"{name:14s} {row[0]:10.3f} {row[1]:20.3f}")

    print("\nA few predictions (descriptions, adapted):")
    sample = news.sample(5, random_state=1)
    proba = model.predict_proba(sample["text"])
    for (_, article), p in zip(sample.iterrows(), proba, strict=True):
        guess = model.classes_[p.argmax()]
        print(
            f"  {article['headline'][:50]:50s} -> {guess:13s} p={p.max():.2f} "
            f"(true: {article['topic']})"
        )


if __name__ == "__main__":
    main()
