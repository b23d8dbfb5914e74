"""Grid search on two Dask worker processes against joblib's loky backend, in one run.

Issue 9 asks for the ratio. Both run the same ``GridSearchCV`` (an embedding +
``LogisticRegression`` pipeline on BBC News articles from ``skembed.datasets``; a grid of
``C`` x ``dimensions``; 3 folds; refit) with two worker processes:

- ``loky``: ``joblib.parallel_config(backend="loky", n_jobs=2)``;
- ``dask``: ``joblib.parallel_config(backend="dask", n_jobs=2)`` with a ``Client`` of a
  ``distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``.

Each backend gets its own cache directory: the first search is cold (every text is
fetched once, then shared by all folds and candidates through the cache), the second is
warm (every text read from the cache). Workers of both backends are started and have
imported skembed before any timing (cluster start-up is printed on its own).

The embedder is ``OpenAIEmbeddingTransformer`` against our fake OpenAI server (a
separate process, ``--latency`` seconds per request); with ``--local``, the search is
repeated with ``LocalEmbeddingTransformer(n_threads=1)`` (the CPU-bound bundled model;
only ``C`` is searched). Also measured, with ``--local``: embedding a dask Series of
articles with :func:`skembed.embed_partitions` on the two workers (without a cache, and
with a shared cold cache) against one in-process ``transform`` using every core.

Usage::

    python benchmarks/bench_dask.py [--n-samples 600] [--latency 0.1] [--repeats 1]
                                    [--local [--local-samples 200]]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer
from skembed.datasets import load_bbc_news

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fake_openai import FakeOpenAIServer

BACKENDS = ("loky", "dask")


def _warm_up():
    # Imported before timing, as a long-lived pool would have them.
    import sklearn.linear_model  # noqa: F401

    import skembed._local
    import skembed._transformer  # noqa: F401

    return os.getpid()


def _start_workers(backend):
    with joblib.parallel_config(backend=backend, n_jobs=2):
        pids = joblib.Parallel()(joblib.delayed(_warm_up)() for _ in range(8))
    return len(set(pids))


def _search(embedder, grid, texts, y, backend):
    model = Pipeline([("embed", embedder), ("clf", LogisticRegression(max_iter=1000))])
    search = GridSearchCV(model, grid, cv=3)
    with joblib.parallel_config(backend=backend, n_jobs=2):
        start = time.perf_counter()
        search.fit(texts, y)
    return time.perf_counter() - start, search


def bench_grid_search(make_embedder, grid, texts, y, workdir, repeats, server=None):
    """Median seconds per (backend, cold/warm); the server's counts of the first round."""
    seconds = {(b, s): [] for b in BACKENDS for s in ("cold", "warm")}
    paid, scores = {}, {}
    for round_ in range(repeats):
        # Alternate which backend goes first: the machine's load drifts.
        for backend in BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]:
            cache = os.path.join(workdir, f"{backend}-{round_}-{time.monotonic_ns()}")
            for state in ("cold", "warm"):
                if server is not None:
                    server.reset_stats()
                elapsed, search = _search(make_embedder(cache), grid, texts, y, backend)
                seconds[backend, state].append(elapsed)
                scores[backend] = search.cv_results_["mean_test_score"]
                if server is not None and round_ == 0:
                    stats = server.stats(texts=False)
                    paid[backend, state] = (stats["requests"], stats["inputs"])
    np.testing.assert_allclose(scores["dask"], scores["loky"])  # the same search
    return {key: statistics.median(values) for key, values in seconds.items()}, paid


def bench_partitions(texts, repeats, workdir):
    """Median seconds: embed_partitions on the workers vs one in-process transform.

    The workers run without a cache, and with one cold cache that they share (the
    local model does not take the cache's fetch lock, so they must not take turns).
    """
    import dask.dataframe as dd
    import pandas as pd

    from skembed import embed_partitions

    ddf = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=8)
    in_process = LocalEmbeddingTransformer(cache=None)
    in_process.transform(texts[:2])  # load the model here too
    names = (
        "in-process transform",
        "embed_partitions (2 workers)",
        "embed_partitions, shared cold cache",
    )
    timings = {name: [] for name in names}
    for round_ in range(repeats):
        start = time.perf_counter()
        want = in_process.transform(texts)
        timings[names[0]].append(time.perf_counter() - start)
        shared = os.path.join(workdir, f"partitions-{round_}-{time.monotonic_ns()}")
        for name, cache in ((names[1], None), (names[2], shared)):
            embedder = LocalEmbeddingTransformer(n_threads=1, cache=cache)
            start = time.perf_counter()
            got = embed_partitions(embedder, ddf["text"]).compute()
            timings[name].append(time.perf_counter() - start)
            np.testing.assert_allclose(got.to_numpy(), want, atol=1e-4)
    return {name: statistics.median(values) for name, values in timings.items()}


def _print_grid(title, timings, paid):
    print(f"\n{title}")
    for state in ("cold", "warm"):
        for backend in BACKENDS:
            line = f"  {state} {backend:5s} {timings[backend, state]:7.2f} s"
            if (backend, state) in paid:
                requests, inputs = paid[backend, state]
                line += f"   {requests:4d} requests  {inputs:5d} texts paid"
            print(line)
        ratio = timings["dask", state] / timings["loky", state]
        print(f"  {state} dask / loky = {ratio:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-samples", type=int, default=600, help="BBC articles")
    parser.add_argument("--latency", type=float, default=0.1, help="fake server, s/request")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--local", action="store_true", help="also the bundled local model")
    parser.add_argument("--local-samples", type=int, default=200, help="BBC articles, --local")
    parser.add_argument("--workdir", default=None, help="where the caches go (default: temp)")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    news = load_bbc_news(n_samples=args.n_samples)
    texts, y = news["text"].tolist(), news["topic"].to_numpy()
    print(
        f"{len(texts)} BBC articles ({len(set(texts))} distinct), 3-fold GridSearchCV + refit, "
        f"{os.cpu_count()} cores, median of {args.repeats} round(s)"
    )
    with (
        FakeOpenAIServer(latency=args.latency) as server,
        tempfile.TemporaryDirectory(dir=args.workdir) as workdir,
    ):
        # Worker processes copy the environment when they start: set the key first.
        os.environ["OPENAI_API_KEY"] = server.api_key
        start = time.perf_counter()
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
        n_dask = _start_workers("dask")
        dask_start = time.perf_counter() - start
        start = time.perf_counter()
        n_loky = _start_workers("loky")
        loky_start = time.perf_counter() - start
        print(
            f"worker start-up (not in the timings below): dask {dask_start:.1f} s "
            f"({n_dask} workers used), loky {loky_start:.1f} s ({n_loky} workers used)"
        )
        try:

            def openai_embedder(cache):
                return OpenAIEmbeddingTransformer(base_url=server.base_url, cache=cache)

            grid = {"embed__dimensions": [64, 256], "clf__C": [0.1, 1, 10]}
            timings, paid = bench_grid_search(
                openai_embedder, grid, texts, y, workdir, args.repeats, server
            )
            _print_grid(
                f"OpenAIEmbeddingTransformer, fake server at {args.latency * 1000:.0f} ms per "
                "request; grid: dimensions (64, 256) x C (0.1, 1, 10) = 6 candidates:",
                timings,
                paid,
            )
            if args.local:

                def local_embedder(cache):
                    return LocalEmbeddingTransformer(n_threads=1, cache=cache)

                local = load_bbc_news(n_samples=args.local_samples)
                local_texts, local_y = local["text"].tolist(), local["topic"].to_numpy()
                grid = {"clf__C": [0.1, 1, 10]}
                timings, _ = bench_grid_search(
                    local_embedder, grid, local_texts, local_y, workdir, args.repeats
                )
                _print_grid(
                    f"LocalEmbeddingTransformer(n_threads=1), {len(local_texts)} articles; "
                    "grid: C (0.1, 1, 10):",
                    timings,
                    {},
                )
                partitions = bench_partitions(local_texts, args.repeats, workdir)
                base = partitions["in-process transform"]
                print(f"\nembedding {len(local_texts)} articles with the local model:")
                for name, seconds in partitions.items():
                    print(f"  {name:30s} {seconds:7.2f} s   {seconds / base:.2f}x in-process")
        finally:
            client.close()
            cluster.close()


if __name__ == "__main__":
    main()
