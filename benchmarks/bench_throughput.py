"""Throughput of OpenAIEmbeddingTransformer against a cookbook-style sequential client.

Both talk to our fake OpenAI server, started here as a separate process, through the
official SDK. Two scenarios, each measured against its baseline in the same run:

- latency-bound: 4,000 texts of 5-120 words; the server takes 150 ms per request plus
  20 ms per 1k tokens and sets no rate limit. The baseline sends requests of 2048 inputs
  one after the other (as the OpenAI cookbook does). Target: >= 4x its texts/s.
- rate-limited: a tokens-per-minute limit such that an ideal client needs about 20 s,
  enforced over 2-second windows (``--window``). Target: >= 0.93 of the limit with at
  most 2 x 429, no error surfaced to the user.
- concurrency (``--concurrency``): texts/s of skembed at each ``max_concurrency`` under
  three latency profiles (a fast service at 100 ms + 5 ms per 1k tokens, the
  latency-bound one, and 400 ms + 40 ms per 1k tokens for a slow region or a busy
  service), beside the cookbook client, and the rate-limited scenario at each: what the
  default ``max_concurrency`` rests on.

- first call (``--first-call``): the latency-bound scenario, but each client runs in a
  fresh process with the SDK (and skembed) imported before timing, and is timed on its
  first call and again on a second (warm) call. One-time setup = first - warm.
  Targets: setup <= 0.2 s, first call >= 4x the cookbook client's first call.

Run from the repository root::

    python benchmarks/bench_throughput.py [--texts 4000] [--seconds 20] [--window 2]
        [--first-call] [--concurrency]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai

from skembed import OpenAIEmbeddingTransformer
from skembed._tokens import count_tokens
from tests.fake_openai import FakeOpenAIServer

MODEL = "text-embedding-3-small"


def make_texts(n, seed=0):
    """``n`` distinct texts of 5-120 pseudo-words (so that de-duplication plays no part)."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "xe"]
    vocabulary = ["".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(3000)]
    return [f"{i} " + " ".join(rng.choice(vocabulary, rng.integers(5, 121))) for i in range(n)]


def cookbook_client(server, texts, batch=2048):
    """Sequential requests of 2048 inputs, the SDK's defaults otherwise."""
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)
    vectors = []
    for start in range(0, len(texts), batch):
        response = client.embeddings.create(model=MODEL, input=texts[start : start + batch])
        vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
    return np.asarray(vectors, dtype=np.float32)


def skembed_client(server, texts, **params):
    embedder = OpenAIEmbeddingTransformer(
        model=MODEL, base_url=server.base_url, cache=None, **params
    )
    return embedder.transform(texts)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def latency_bound(server, texts, repeats):
    server.configure(latency=0.15, latency_per_1k_tokens=0.02, rpm=None, tpm=None)
    rows = {}
    for name, client in (
        ("cookbook (sequential, 2048/request)", cookbook_client),
        ("skembed", skembed_client),
    ):
        times = []
        for _ in range(repeats):
            server.reset_stats()
            _, seconds = timed(client, server, texts)
            times.append(seconds)
        stats = server.stats(texts=False)
        rows[name] = (float(np.median(times)), stats["requests"], stats["peak_concurrency"])
    print("\n## latency-bound: 150 ms + 20 ms per 1k tokens, no rate limit")
    print(f"{len(texts)} texts, {int(count_tokens(texts).sum())} tokens, median of {repeats}")
    print("| client | seconds | texts/s | requests | peak concurrency |")
    print("|---|---|---|---|---|")
    for name, (seconds, requests, peak) in rows.items():
        print(f"| {name} | {seconds:.2f} | {len(texts) / seconds:.0f} | {requests} | {peak} |")
    base, ours = rows["cookbook (sequential, 2048/request)"][0], rows["skembed"][0]
    print(f"ratio skembed / cookbook texts/s: {base / ours:.2f}x (target >= 4x)")


def rate_limited(server, texts, target_seconds, burst_seconds=2.0, **params):
    total = int(count_tokens(texts).sum())
    tpm = int(total / target_seconds * 60)
    server.configure(
        latency=0.05, latency_per_1k_tokens=0.0, rpm=None, tpm=tpm, burst_seconds=burst_seconds
    )
    server.reset_stats()
    _, seconds = timed(skembed_client, server, texts, **params)
    stats = server.stats(texts=False)
    ceiling = tpm / 60
    burst = ceiling * burst_seconds  # the bucket starts full
    print(f"\n## rate-limited: TPM {tpm} ({ceiling:.0f} tokens/s), {burst_seconds:.0f}-s windows")
    print(
        f"{len(texts)} texts, {total} tokens; an ideal client needs "
        f"{(total - burst) / ceiling:.1f} s after the initial burst"
    )
    print("| client | seconds | tokens/s | fraction of TPM ceiling | 429s | requests | errors |")
    print("|---|---|---|---|---|---|---|")
    achieved = (total - burst) / seconds
    n429 = stats["requests_by_status"].get("429", 0)
    print(
        f"| skembed | {seconds:.1f} | {total / seconds:.0f} | {achieved / ceiling:.3f} | "
        f"{n429} | {stats['requests']} | 0 |"
    )
    server.reset_stats()
    try:
        _, seconds = timed(cookbook_client, server, texts)
        outcome = f"{seconds:.1f} s"
    except openai.OpenAIError as error:
        outcome = f"failed: {type(error).__name__}"
    stats = server.stats(texts=False)
    print(
        f"| cookbook (sequential, SDK retries) | {outcome} | | | "
        f"{stats['requests_by_status'].get('429', 0)} | {stats['requests']} | |"
    )
    print(
        "(fraction = tokens beyond the initial burst / seconds / ceiling; "
        "target >= 0.93 with <= 2 x 429)"
    )


PROFILES = {
    "100 ms + 5 ms/1k": (0.10, 0.005),
    "150 ms + 20 ms/1k": (0.15, 0.02),
    "400 ms + 40 ms/1k": (0.40, 0.04),
}
CONCURRENCIES = (2, 4, 8, 16, 32)


def concurrency_sweep(server, texts, repeats, target_seconds, window):
    """skembed's texts/s at each max_concurrency, beside the cookbook client."""
    print(f"\n## max_concurrency: {len(texts)} texts, median of {repeats}")
    print("| latency | cookbook s | " + " | ".join(f"c={c}" for c in CONCURRENCIES) + " |")
    print("|---|---|" + "---|" * len(CONCURRENCIES))
    for name, (latency, per_1k) in PROFILES.items():
        server.configure(latency=latency, latency_per_1k_tokens=per_1k, rpm=None, tpm=None)
        base = np.median([timed(cookbook_client, server, texts)[1] for _ in range(repeats)])
        cells = []
        for concurrency in CONCURRENCIES:
            seconds = np.median(
                [
                    timed(skembed_client, server, texts, max_concurrency=concurrency)[1]
                    for _ in range(repeats)
                ]
            )
            cells.append(f"{seconds:.2f} s ({base / seconds:.1f}x)")
        print(f"| {name} | {base:.2f} | " + " | ".join(cells) + " |")
    print("(each cell: skembed's seconds, and its speed-up over the cookbook client)")
    for concurrency in CONCURRENCIES:
        print(f"\nrate-limited at max_concurrency={concurrency}:")
        rate_limited(server, texts, target_seconds, window, max_concurrency=concurrency)


_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import openai  # the SDK imported before timing, as in any program that uses it
import skembed
from benchmarks.bench_throughput import cookbook_client, make_texts, skembed_client
class Server:
    base_url, api_key = {base_url!r}, {api_key!r}
texts = make_texts({n})
client = skembed_client if {which!r} == "skembed" else cookbook_client
times = []
for _ in range(2):
    start = time.perf_counter()
    client(Server, texts)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def first_call(server, n_texts, repeats):
    """Each client in a fresh process: its first call, then a warm one."""
    import json
    import subprocess

    server.configure(latency=0.15, latency_per_1k_tokens=0.02, rpm=None, tpm=None)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    rows = {}
    for which in ("cookbook", "skembed"):
        runs = []
        for _ in range(repeats):
            code = _CHILD.format(
                root=root, base_url=server.base_url, api_key=server.api_key, n=n_texts, which=which
            )
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows[which] = np.median(np.asarray(runs), axis=0)
    load = os.getloadavg()
    print(f"\n## first call: fresh process per client, 150 ms + 20 ms/1k tokens, {n_texts} texts")
    print(f"median of {repeats} processes; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| client | first call s | warm call s | one-time setup s |")
    print("|---|---|---|---|")
    for which, (first, warm) in rows.items():
        print(f"| {which} | {first:.2f} | {warm:.2f} | {first - warm:.2f} |")
    (cb_first, cb_warm), (sk_first, sk_warm) = rows["cookbook"], rows["skembed"]
    print(f"first-call ratio skembed / cookbook: {cb_first / sk_first:.2f}x (target >= 4x)")
    print(f"warm ratio skembed / cookbook: {cb_warm / sk_warm:.2f}x")
    print(f"skembed one-time setup: {sk_first - sk_warm:.2f} s (target <= 0.2 s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="time an ideal client needs in the rate-limited scenario",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--window", type=float, default=2.0, help="seconds of the TPM limit's burst window"
    )
    parser.add_argument(
        "--first-call", action="store_true", help="only the fresh-process first-call scenario"
    )
    parser.add_argument("--concurrency", action="store_true", help="only the max_concurrency sweep")
    args = parser.parse_args()
    texts = make_texts(args.texts)
    print(f"machine: {os.cpu_count()} cores; openai SDK {openai.__version__}")
    with FakeOpenAIServer() as server:
        os.environ["OPENAI_API_KEY"] = server.api_key
        if args.first_call:
            first_call(server, args.texts, args.repeats)
            return
        if args.concurrency:
            concurrency_sweep(server, texts, args.repeats, args.seconds, args.window)
            return
        latency_bound(server, texts, args.repeats)
        rate_limited(server, texts, args.seconds, args.window)


if __name__ == "__main__":
    main()
