"""Exact cosine k-NN: CosineNearestNeighbors against the machine's limit and the baselines.

For each size, on embedding-like float32 data, in the same run:

- ``matmul floor``: the bare float32 product of the queries with every fitted row, the
  cheapest any exact search can be (the fastest of one ``Q @ X.T`` call, the same
  product in blocks into a reused buffer, and those blocks split between threads);
- ``skembed``: ``CosineNearestNeighbors().kneighbors`` (blocked exact search);
- ``numpy``: matmul + argpartition + sort of the k best, in chunks of queries whose
  score matrix stays under 512 MB (one full matrix at 1M rows would take 4 GB plus an
  8 GB index array);
- ``sklearn``: ``NearestNeighbors(metric="cosine", algorithm="brute")``;
- ``hnsw``: ``CosineNearestNeighbors(algorithm="hnsw")``, build time, query time and
  recall@k against the exact result, at the smallest size of the run.

Times are the best of ``--repeats`` runs, the methods interleaved so that a busy
machine slows them alike. Peak extra memory is the peak of NumPy allocations during the
call (tracemalloc), the input matrices not counted. ``--pruning`` adds the experiment
with the low-rank pruning search proposed in the issue (exact, not shipped; see
docs/neighbors.rst).

``--storage int8`` (or ``float16``) runs the reduced-storage benchmark instead: at
``--n-samples`` rows (1M by default) of 384 dimensions with a real spectrum (the local
model's vectors of BBC News sentences, mixed in pairs and spread with noise drawn from
their own covariance, generated in chunks), the exact float32 search against the
reduced scan with exact rescoring: index memory, recall@k and queries/s in the same
run; then the HNSW graph in float32 and the reduced storage at ``--hnsw-samples`` rows
(100k by default; its build time is printed with a linear-times-log extrapolation to
``--n-samples``).

Run outside CI, with the BLAS at its full speed::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_knn.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_knn.py --quick
    SKEMBED_CACHE_DIR=/tmp/bench-cache python benchmarks/bench_knn.py --storage int8
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_info

from skembed import _math
from skembed.neighbors import CosineNearestNeighbors

FULL_SIZES = [(100_000, 256), (100_000, 1536), (1_000_000, 256)]
QUICK_SIZES = [(20_000, 256), (20_000, 1536), (200_000, 256)]


def make_embedding_like(n_samples, n_features, *, spread=1.5, alpha=0.8, seed=0):
    """Unit-norm float32 rows shaped like sentence embeddings.

    Clusters of about 200 rows around centres drawn with a power-law spectrum
    (eigenvalue ``i`` proportional to ``i**-alpha``), a shared mean direction
    (embeddings are anisotropic) and a random rotation. The defaults were matched to
    all-MiniLM-L6-v2 vectors of the 2,225 BBC News articles: at that size, mean
    cosine 0.14 (real 0.12), mean cosine of the 10th nearest neighbour 0.51 (0.50),
    share of the energy in the top ``d/8`` principal directions 0.70 (0.66).
    """
    rng = np.random.default_rng(seed)
    n_clusters = max(8, n_samples // 200)
    scale = (np.arange(1, n_features + 1) ** (-alpha / 2)).astype(np.float32)
    rotation = np.linalg.qr(rng.standard_normal((n_features, n_features)))[0]
    rotation = rotation.astype(np.float32)
    centres = rng.standard_normal((n_clusters, n_features), dtype=np.float32) * scale
    mean = rng.standard_normal(n_features).astype(np.float32)
    mean *= 0.35 * np.sqrt((scale**2).sum() * (1 + spread**2)) / np.linalg.norm(mean)
    X = np.empty((n_samples, n_features), dtype=np.float32)
    for start in range(0, n_samples, 65536):
        stop = min(start + 65536, n_samples)
        block = rng.standard_normal((stop - start, n_features), dtype=np.float32)
        block *= spread * scale
        block += centres[rng.integers(n_clusters, size=stop - start)]
        block = block @ rotation + mean
        X[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return X


def matmul_floor(queries, base):
    """Time of the bare product, the fastest of three ways to run it on this machine.

    One ``Q @ X.T`` call; the same product in blocks into a reused buffer; the blocks
    split between threads that each run a single-threaded BLAS (how the search runs).
    """
    times = []
    if queries.shape[0] * base.shape[0] * 4 <= 4 * 2**30:
        start = time.perf_counter()
        scores = queries @ base.T
        times.append(time.perf_counter() - start)
        del scores

    def blocked(lo, hi):
        buffer = np.empty((queries.shape[0], 2048), dtype=np.float32)
        for block in range(lo, hi, 2048):
            stop = min(block + 2048, hi)
            np.matmul(queries, base[block:stop].T, out=buffer[:, : stop - block])

    start = time.perf_counter()
    blocked(0, base.shape[0])
    times.append(time.perf_counter() - start)
    n_threads = _math._resolve_n_threads(None)
    bounds = np.linspace(0, base.shape[0], n_threads + 1).astype(int)
    with (
        _math._blas_controller().limit(limits=1, user_api="blas"),
        ThreadPoolExecutor(n_threads) as pool,
    ):
        start = time.perf_counter()
        shards = [pool.submit(blocked, lo, hi) for lo, hi in itertools.pairwise(bounds)]
        for shard in shards:
            shard.result()
        times.append(time.perf_counter() - start)
    return min(times)


def numpy_topk(queries, base, k):
    """What one writes with NumPy alone: product, argpartition, sort of the k best."""
    rows = max(1, (512 * 2**20) // (4 * base.shape[0]))
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    for lo in range(0, queries.shape[0], rows):
        scores = queries[lo : lo + rows] @ base.T
        best = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]
        order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1)
        indices[lo : lo + rows] = np.take_along_axis(best, order, axis=1)
    return indices


def measure(fn, memory=False):
    """Run ``fn``; return its result, seconds and peak NumPy allocations (bytes)."""
    gc.collect()
    if memory:
        tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = 0
    if memory:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, seconds, peak


def recall(found, truth):
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def same_neighbours(queries, base, indices, ref_indices, atol=1e-5):
    """Share of rows whose neighbour sets are equal up to float32 ties."""
    ok = 0
    for q, ours, ref in zip(queries, indices, ref_indices, strict=True):
        a = np.sort(base[ours].astype(np.float64) @ q.astype(np.float64))
        b = np.sort(base[ref].astype(np.float64) @ q.astype(np.float64))
        ok += bool(np.allclose(a, b, atol=atol))
    return ok / len(queries)


def gb(nbytes):
    return f"{nbytes / 1e9:.2f}"


def bench_size(n_samples, n_features, args, rows, with_ann):
    print(f"\n== {n_samples:,} x {n_features} (float32), {args.n_queries} queries, k={args.k}")
    X = make_embedding_like(n_samples + args.n_queries, n_features, seed=args.seed)
    base, queries = X[args.n_queries :], np.ascontiguousarray(X[: args.n_queries])
    k = args.k

    ours, fit_seconds, _ = measure(lambda: CosineNearestNeighbors(n_neighbors=k).fit(base))
    sklearn_nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(base)
    times = {"floor": [], "skembed": [], "numpy": [], "sklearn": []}
    for repeat in range(args.repeats):
        times["floor"].append(matmul_floor(queries, base))
        (_, exact), seconds, _ = measure(lambda: ours.kneighbors(queries))
        times["skembed"].append(seconds)
        if repeat < args.baseline_repeats:
            numpy_indices, seconds, _ = measure(lambda: numpy_topk(queries, base, k))
            times["numpy"].append(seconds)
            if not args.no_sklearn:
                (_, sk_indices), seconds, _ = measure(lambda: sklearn_nn.kneighbors(queries))
                times["sklearn"].append(seconds)
    _, _, ours_peak = measure(lambda: ours.kneighbors(queries), memory=True)
    _, _, numpy_peak = measure(lambda: numpy_topk(queries, base, k), memory=True)
    sklearn_peak = None
    if not args.no_sklearn:
        _, _, sklearn_peak = measure(lambda: sklearn_nn.kneighbors(queries), memory=True)

    best = {name: min(t) if t else None for name, t in times.items()}
    check = same_neighbours(queries[:200], base, exact[:200], numpy_indices[:200])
    identical = np.mean(exact == numpy_indices)
    print(f"fit (norm check, no copy): {fit_seconds:.3f} s")
    print(
        f"skembed vs numpy: {identical:.4%} identical indices, {check:.1%} of rows equal up to ties"
    )
    if not args.no_sklearn:
        print(f"skembed vs sklearn: {np.mean(exact == sk_indices):.4%} identical indices")
    for name in ("floor", "skembed", "numpy", "sklearn"):
        if best[name] is not None:
            print(f"  {name:8s} " + " ".join(f"{t:7.3f}" for t in times[name]) + " s")
    size = f"{n_samples // 1000:,}k x {n_features}"
    rows.append(
        {
            "size": size,
            "floor": best["floor"],
            "skembed": best["skembed"],
            "numpy": best["numpy"],
            "sklearn": best["sklearn"],
            "mem_skembed": ours_peak,
            "mem_numpy": numpy_peak,
            "mem_sklearn": sklearn_peak,
        }
    )
    if with_ann:
        bench_hnsw(base, queries, exact, k, size)
    if args.pruning and n_features * n_samples <= 100_000 * 1536:
        pruning_experiment(base, queries, k, best["skembed"], exact, size)


def bench_hnsw(base, queries, exact, k, size):
    ann, build, _ = measure(
        lambda: CosineNearestNeighbors(n_neighbors=k, algorithm="hnsw", random_state=0).fit(base)
    )
    print(f"\nhnsw at {size}: build {build:.1f} s (M=16, ef_construction=200, 2 threads)")
    print("| ef_search | query time (s) | recall@10 |")
    print("|---:|---:|---:|")
    for ef in (16, 32, 64, 128):
        ann.set_params(hnsw_ef_search=ef)
        found = None
        seconds = []
        for _ in range(3):
            found, t, _ = measure(lambda: ann.kneighbors(queries, return_distance=False))
            seconds.append(t)
        default = " (default)" if ef == max(64, 2 * k) else ""
        print(f"| {ef}{default} | {min(seconds):.3f} | {recall(found, exact):.3f} |")


# --- The pruning experiment (issue 6): exact by construction, not shipped. ---------


class LowRankBound:
    """Upper bounds of ``q @ x`` from a rank-``r`` sketch, rigorous up to rounding.

    With ``P`` the top ``r`` principal directions (uncentred) of the fitted rows,
    ``q @ x = (q P) @ (x P) + q_perp @ x_perp <= (q P) @ (x P) + |q_perp| |x_perp|``
    (Cauchy-Schwarz). Sketching a row as ``[x P, |x_perp|]`` and a query as
    ``[q P, |q_perp|]`` makes the bound one ``r + 1`` dimensional dot product.
    """

    def __init__(self, base, rank):
        gram = np.zeros((base.shape[1], base.shape[1]))
        for lo in range(0, base.shape[0], 65536):
            block = base[lo : lo + 65536]
            gram += block.T @ block
        vectors = np.linalg.eigh(gram)[1][:, ::-1][:, :rank]
        self.components = np.ascontiguousarray(vectors, dtype=np.float32)
        # float32 rounding of the exact score, the bound and the basis, with room.
        self.slack = 4.0 * (base.shape[1] + rank + 8) * 2.0**-24
        self.base_sketch = np.vstack(
            [self.sketch(base[lo : lo + 65536]) for lo in range(0, base.shape[0], 65536)]
        )

    def sketch(self, rows):
        projected = rows @ self.components
        residual = rows.astype(np.float64) - projected.astype(np.float64) @ self.components.T
        norms = np.sqrt(np.einsum("ij,ij->i", residual, residual)).astype(np.float32)
        return np.hstack([projected, np.nextafter(norms, np.float32(2))[:, None]])


def pruned_topk(queries, base, bound, k):
    """Exact top-k: scan the sketches, rescore only the rows whose bound can enter."""

    def scan(q0, q1, start, stop):
        block_queries = queries[q0:q1]
        top = _math._TopK(q1 - q0, k)
        left = bound.sketch(block_queries)
        buffer = np.empty((q1 - q0, _math._BASE_BLOCK), dtype=np.float32)
        for lo in range(start, stop, _math._BASE_BLOCK):
            hi = min(lo + _math._BASE_BLOCK, stop)
            bounds = buffer[:, : hi - lo]
            np.matmul(left, bound.base_sketch[lo:hi].T, out=bounds)
            lowered = top.threshold - bound.slack
            for r0 in range(0, q1 - q0, _math._ROW_CHUNK):
                r1 = min(r0 + _math._ROW_CHUNK, q1 - q0)
                mask = bounds[r0:r1] > lowered[r0:r1, None]
                n_candidates = np.count_nonzero(mask)
                if n_candidates > 0.01 * mask.size:  # dense: one product is cheaper
                    exact = block_queries[r0:r1] @ base[lo:hi].T
                    top._merge_dense(np.arange(r0, r1), exact, lo)
                elif n_candidates:
                    r, c = np.divmod(np.flatnonzero(mask), hi - lo)
                    exact = np.einsum("ij,ij->i", block_queries[r + r0], base[c + lo])
                    top._merge_pairs(r + r0, exact, c + lo)
        return top

    n_threads = _math._resolve_n_threads(None)
    tops = _math._run_sharded(scan, len(queries), len(base), 1024, n_threads, np.inf)
    return _math._finish(tops, len(queries), k)[1]


def pruning_experiment(base, queries, k, brute_seconds, exact, size):
    print(f"\npruning experiment at {size} (brute exact: {brute_seconds:.3f} s)")
    print("| rank r | bound fit (s) | query (s) | vs brute | rows rescored | same as brute |")
    print("|---:|---:|---:|---:|---:|---:|")
    d = base.shape[1]
    for rank in (d // 16, d // 8, d // 4, d // 2):
        bound, fit, _ = measure(lambda rank=rank: LowRankBound(base, rank))
        indices, seconds, _ = measure(lambda bound=bound: pruned_topk(queries, base, bound, k))
        # Share of (query, row) pairs whose bound beats the final k-th score: the
        # rescoring work of an ideal scan that knew its threshold from the start.
        sample = queries[:100]
        kth = 1.0 - _math.cosine_topk(sample, base, k)[0][:, -1]
        bounds = bound.sketch(sample) @ bound.base_sketch.T
        survivors = np.mean(bounds > kth[:, None] - bound.slack)
        same = same_neighbours(queries[:200], base, indices[:200], exact[:200])
        print(
            f"| {rank} | {fit:.2f} | {seconds:.3f} | {brute_seconds / seconds:.2f}x "
            f"| {survivors:.2%} | {same:.1%} |"
        )


# --- Reduced storage with exact rescoring (issue 19) -----------------------------


def real_vectors(n_sentences, seed):
    """The local model's vectors of ``n_sentences`` BBC News sentences (cached)."""
    import re

    from skembed import LocalEmbeddingTransformer
    from skembed.datasets import load_bbc_news

    sentences = [
        part.strip()
        for text in load_bbc_news().text
        for part in re.split(r"(?<=[.!?])\s+", text)
        if len(part.strip()) > 40
    ]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(sentences), size=n_sentences, replace=False))
    vectors = LocalEmbeddingTransformer().fit_transform([sentences[i] for i in chosen])
    return np.ascontiguousarray(vectors, dtype=np.float32)


def real_spectrum_rows(vectors, n_samples, *, noise=0.8, seed=0, chunk=65536):
    """Unit rows ``w a + (1 - w) b + noise * z``: pairs of real vectors and Gaussian noise.

    ``w`` is uniform in [0.6, 1] and ``z`` has the real vectors' covariance, so the
    spectrum, the mean direction and the per-dimension ranges are the model's. At
    20,000 rows the mean cosine of the 10th neighbour is 0.36 (real sentences: 0.40).
    """
    rng = np.random.default_rng(seed)
    centred = vectors - vectors.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T.astype(np.float64) @ centred)
    colour = np.sqrt(np.clip(eigenvalues, 0, None) / len(vectors))[:, None] * eigenvectors.T
    colour = colour.astype(np.float32)
    X = np.empty((n_samples, vectors.shape[1]), dtype=np.float32)
    for lo in range(0, n_samples, chunk):
        n = min(chunk, n_samples - lo)
        w = rng.uniform(0.6, 1.0, size=(n, 1)).astype(np.float32)
        block = w * vectors[rng.integers(len(vectors), size=n)]
        block += (1 - w) * vectors[rng.integers(len(vectors), size=n)]
        block += noise * (rng.standard_normal((n, vectors.shape[1]), dtype=np.float32) @ colour)
        X[lo : lo + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return X


def load_line():
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def timed_queries(nn, queries, repeats):
    best, result = np.inf, None
    for _ in range(repeats):
        result, seconds, _ = measure(lambda: nn.kneighbors(queries))
        best = min(best, seconds)
    return result, best


def exactness(queries, base, result):
    """Largest gap between a returned distance and the exact one of the row returned."""
    distances, indices = result
    worst = 0.0
    for lo in range(0, len(queries), 100):
        rows = base[indices[lo : lo + 100]].astype(np.float64)
        exact = 1.0 - np.einsum("qd,qkd->qk", queries[lo : lo + 100].astype(np.float64), rows)
        worst = max(worst, float(np.abs(distances[lo : lo + 100] - exact).max()))
    return worst


def bench_storage(args):
    k, storage = args.k, args.storage
    vectors, seconds, _ = measure(lambda: real_vectors(args.n_real, args.seed))
    print(f"{len(vectors):,} real vectors ({vectors.shape[1]} dims) in {seconds:.0f} s")
    X, seconds, _ = measure(
        lambda: real_spectrum_rows(vectors, args.n_samples + args.n_queries, seed=args.seed)
    )
    base, queries = X[args.n_queries :], np.ascontiguousarray(X[: args.n_queries])
    print(f"{len(base):,} x {base.shape[1]} rows generated in {seconds:.0f} s; {load_line()}")
    table = []

    def run(label, n_rows, efs=(None,), **params):
        rows = base[:n_rows]
        nn, fit, _ = measure(lambda: CosineNearestNeighbors(n_neighbors=k, **params).fit(rows))
        for ef in efs:
            nn.set_params(hnsw_ef_search=ef)
            result, seconds = timed_queries(nn, queries, args.repeats)
            table.append(
                {
                    "label": label if ef is None else f"{label}, ef_search {ef}",
                    "rows": n_rows,
                    "fit": fit,
                    "qps": len(queries) / seconds,
                    "nbytes": nn.index_nbytes_,
                    "result": result,
                    "gap": exactness(queries, rows, result),
                    "load": os.getloadavg()[0],
                }
            )
            print(
                f"  {table[-1]['label']} at {n_rows:,}: fit {fit:.1f} s, "
                f"{len(queries) / seconds:,.0f} q/s; {load_line()}"
            )
        return nn

    n_big = len(base)
    run("brute float32", n_big)
    run(f"brute {storage}", n_big, storage=storage)
    n_small = min(args.hnsw_samples, n_big)
    exact_small = run("brute float32", n_small)
    efs = (None, *args.ef_search)
    for st in ("float32", storage):
        run(f"hnsw {st}", n_small, efs, algorithm="hnsw", storage=st)
    truths = {row["rows"]: row["result"][1] for row in table if row["label"] == "brute float32"}
    del exact_small
    builds = [row for row in table if row["label"] == f"hnsw {storage}"]
    scale = n_big * np.log(n_big) / (n_small * np.log(n_small))
    estimate = builds[0]["fit"] * scale
    print(
        f"\nhnsw {storage} build at {n_small:,}: {builds[0]['fit']:.0f} s; "
        f"extrapolated to {n_big:,} (n log n): {estimate / 60:.0f} min"
    )
    if args.hnsw_full and n_small < n_big and estimate <= args.hnsw_budget:
        run(f"hnsw {storage}", n_big, efs, algorithm="hnsw", storage=storage)

    print(f"\n{len(queries):,} queries, k={k}, best of {args.repeats}")
    print(
        "| method | rows | index memory | vs float32 | recall@10 | queries/s "
        "| vs exact float32 | max distance error | fit (s) | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in table:
        same_size = [r for r in table if r["rows"] == row["rows"]]
        exact = next(r for r in same_size if r["label"] == "brute float32")
        # The same algorithm in float32 (the exact search for a graph built only here).
        same_method = row["label"].replace(storage, "float32")
        reference = next((r for r in same_size if r["label"] == same_method), exact)
        print(
            f"| {row['label']} | {row['rows']:,} | {row['nbytes'] / 2**20:,.0f} MiB "
            f"| {reference['nbytes'] / row['nbytes']:.2f}x smaller "
            f"| {recall(row['result'][1], truths[row['rows']]):.4f} | {row['qps']:,.0f} "
            f"| {row['qps'] / exact['qps']:.2f}x | {row['gap']:.1e} | {row['fit']:.1f} "
            f"| {row['load']:.1f} |"
        )


def print_table(rows):
    print(
        "\n| size | matmul floor (s) | skembed (s) | numpy (s) | sklearn (s) "
        "| skembed / floor | numpy / skembed | sklearn / skembed "
        "| peak extra memory: skembed / numpy / sklearn (GB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        sk = row["sklearn"]
        mem_sk = gb(row["mem_sklearn"]) if row["mem_sklearn"] is not None else "-"
        print(
            f"| {row['size']} | {row['floor']:.3f} | {row['skembed']:.3f} | {row['numpy']:.3f} "
            f"| {sk:.3f} | {row['skembed'] / row['floor']:.2f}x "
            f"| {row['numpy'] / row['skembed']:.2f}x | {sk / row['skembed']:.2f}x "
            f"| {gb(row['mem_skembed'])} / {gb(row['mem_numpy'])} / {mem_sk} |"
            if sk is not None
            else f"| {row['size']} | {row['floor']:.3f} | {row['skembed']:.3f} "
            f"| {row['numpy']:.3f} | - | {row['skembed'] / row['floor']:.2f}x "
            f"| {row['numpy'] / row['skembed']:.2f}x | - "
            f"| {gb(row['mem_skembed'])} / {gb(row['mem_numpy'])} / - |"
        )


def describe_machine():
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    for lib in blas:
        print(
            f"BLAS: {lib['internal_api']} {lib['version']}, kernel "
            f"{lib.get('architecture')}, {lib['num_threads']} threads ({lib['filepath']})"
        )
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        print(f"{name}={os.environ.get(name, '(unset)')}")
    print(f"skembed search threads: {_math._resolve_n_threads(None)}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    parser.add_argument("--n-queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--baseline-repeats", type=int, default=2, help="repeats of numpy and sklearn"
    )
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--no-ann", action="store_true")
    parser.add_argument("--pruning", action="store_true", help="run the pruning experiment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--storage", choices=["int8", "float16"], help="run the reduced-storage benchmark"
    )
    parser.add_argument("--n-samples", type=int, default=1_000_000, help="with --storage")
    parser.add_argument("--n-real", type=int, default=5000, help="real sentence vectors")
    parser.add_argument("--hnsw-samples", type=int, default=100_000, help="with --storage")
    parser.add_argument(
        "--ef-search", type=int, nargs="*", default=[128, 256], help="besides the default"
    )
    parser.add_argument(
        "--hnsw-full", action="store_true", help="also build the graph at --n-samples"
    )
    parser.add_argument(
        "--hnsw-budget", type=float, default=900, help="seconds the full build may take"
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped to a file

    describe_machine()
    started = time.perf_counter()
    if args.storage:
        bench_storage(args)
        print(f"\n{load_line()} at end; total {time.perf_counter() - started:.0f} s")
        return
    rows = []
    for position, (n_samples, n_features) in enumerate(QUICK_SIZES if args.quick else FULL_SIZES):
        bench_size(n_samples, n_features, args, rows, with_ann=position == 0 and not args.no_ann)
    print_table(rows)
    print(
        f"\nload average at end: {os.getloadavg()[0]:.2f}; "
        f"total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
