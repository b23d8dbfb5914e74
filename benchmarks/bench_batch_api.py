"""Batch-mode throughput against online mode, through the fake server, in the same run.

Both modes embed the same distinct texts with OpenAIEmbeddingTransformer (no cache, so
every text is sent) against our fake OpenAI server, started here as a separate process,
through the official SDK. Online mode: the server takes 150 ms per request plus 20 ms
per 1k tokens (as in bench_throughput.py), no rate limit. Batch mode: each batch
completes ``--batch-seconds`` after it is created (the real service promises 24 h and
often takes minutes; the figure isolates skembed's own cost of packing, uploading,
polling, downloading and parsing), polled every 0.2 s; the per-batch input limit is
lowered to ``--per-batch`` so that the job is split over several batches.

What to read: the batch-mode wall time minus the batch completion time is skembed's
overhead; texts/s of both modes are printed with their ratio.

Run from the repository root::

    python benchmarks/bench_batch_api.py [--texts 20000] [--batch-seconds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_throughput import make_texts

from skembed import OpenAIEmbeddingTransformer
from tests.fake_openai import FakeOpenAIServer

MODEL = "text-embedding-3-small"


def run(server, texts, **params):
    embedder = OpenAIEmbeddingTransformer(
        model=MODEL, base_url=server.base_url, cache=None, **params
    )
    server.reset_stats()
    start = time.perf_counter()
    vectors = embedder.transform(texts)
    return vectors, time.perf_counter() - start, server.stats(texts=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--batch-seconds", type=float, default=2.0)
    parser.add_argument("--per-batch", type=int, default=5_000)
    parser.add_argument("--dimensions", type=int, default=None)
    args = parser.parse_args()
    texts = make_texts(args.texts)
    with FakeOpenAIServer() as server:
        os.environ["OPENAI_API_KEY"] = server.api_key
        os.environ.setdefault("SKEMBED_CACHE_DIR", str(Path.cwd() / ".bench_cache"))
        server.configure(latency=0.15, latency_per_1k_tokens=0.02)
        server.configure_batches(
            completion_seconds=args.batch_seconds, max_inputs_per_batch=args.per_batch
        )
        online, online_s, online_stats = run(server, texts, dimensions=args.dimensions)
        embedder_params = {
            "dimensions": args.dimensions,
            "batch_api": True,
            "batch_poll_interval": 0.2,
            "batch_size": 2048,
        }
        batch, batch_s, batch_stats = run_batch(server, texts, args.per_batch, embedder_params)
    assert np.allclose(online, batch, atol=1e-6), "batch and online vectors differ"
    n = len(texts)
    print(
        f"{n} distinct texts, {online_stats['tokens']:,} tokens, model {MODEL}, "
        f"{online.shape[1]}-d vectors"
    )
    print(
        f"online: {online_s:7.2f} s  {n / online_s:8.0f} texts/s  "
        f"({online_stats['requests']} requests)"
    )
    print(
        f"batch : {batch_s:7.2f} s  {n / batch_s:8.0f} texts/s  "
        f"({batch_stats['batches_created']} batches of <= {args.per_batch} inputs, "
        f"{batch_stats['batch_lines']} lines; each batch completes "
        f"{args.batch_seconds} s after creation)"
    )
    print(
        f"batch / online texts/s: {online_s / batch_s:.2f}x; batch overhead beyond the "
        f"completion time: {batch_s - args.batch_seconds:.2f} s"
    )


def run_batch(server, texts, per_batch, params):
    from skembed.backends._openai_batch import OpenAIBatchBackend

    # Lower the client's per-batch input limit to match the server's.
    original = OpenAIBatchBackend.__init__.__kwdefaults__["max_inputs_per_batch"]
    OpenAIBatchBackend.__init__.__kwdefaults__["max_inputs_per_batch"] = per_batch
    try:
        return run(server, texts, **params)
    finally:
        OpenAIBatchBackend.__init__.__kwdefaults__["max_inputs_per_batch"] = original


if __name__ == "__main__":
    main()
