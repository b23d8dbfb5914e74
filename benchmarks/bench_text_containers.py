"""What the container of the texts costs: list, numpy, pandas and polars, 10k texts.

The container matters only where the texts are read: ``check_texts`` (turn the column
into Python strings, find missing and blank rows) and, around it, the transform of
texts the cache already holds (what a cross-validation fold or a re-run pays). Each
figure is the fastest of ``--repeats`` runs (the least disturbed by other processes),
printed with its ratio to a plain list of the same texts measured in the same run; the
load average is printed alongside, since the machine may be shared.

Usage::

    SKEMBED_CACHE_DIR=/tmp/bench-cache python benchmarks/bench_text_containers.py \\
        [--n-texts 10000] [--repeats 30]

Run it with another checkout first on ``PYTHONPATH`` to compare two versions.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import polars as pl

from skembed import LocalEmbeddingTransformer
from skembed._validation import check_texts


def _best_seconds(function, repeats):
    function()  # warm: imports, first allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    texts = [
        f"review {i}: the fabric is soft and the fit is {i % 7} out of 7"
        for i in range(args.n_texts)
    ]
    containers = {
        "list": lambda: texts,
        "numpy object": lambda: np.asarray(texts, dtype=object),
        "pandas Series": lambda: pd.Series(texts, name="review"),
        "pandas DataFrame": lambda: pd.DataFrame({"review": texts}),
        "pandas, labelled index": lambda: pd.Series(
            texts, index=[f"r{i}" for i in range(len(texts))], name="review"
        ),
        "polars Series": lambda: pl.Series("review", texts),
        "polars DataFrame": lambda: pl.DataFrame({"review": texts}),
        "polars Categorical": lambda: pl.Series("review", texts, dtype=pl.Categorical),
    }
    built = {name: make() for name, make in containers.items()}
    embedder = LocalEmbeddingTransformer()  # the default cache: filled by the warm-up run
    embedder.transform(texts)

    print(f"{args.n_texts} texts, best of {args.repeats}; load average {os.getloadavg()}")
    print(
        f"{'container':<24} {'check_texts':>12} {'ratio':>6} {'cached transform':>17} {'ratio':>6}"
    )
    base_check = base_transform = None
    for name, X in built.items():
        check = _best_seconds(lambda X=X: check_texts(X), args.repeats)
        transform = _best_seconds(lambda X=X: embedder.transform(X), args.repeats)
        base_check = base_check or check
        base_transform = base_transform or transform
        print(
            f"{name:<24} {check * 1e3:>10.2f}ms {check / base_check:>6.2f} "
            f"{transform * 1e3:>15.2f}ms {transform / base_transform:>6.2f}"
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
