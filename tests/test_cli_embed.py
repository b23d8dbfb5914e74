"""``skembed embed``, run as users run it: a subprocess, against the fake OpenAI server
(through the real SDK) and the local model, on parquet files.

What is promised: the output's shape, columns and ids; ``--estimate`` equal to the
tokens the server counts; each exit status; and that a run killed with ``kill -9`` and
re-run with the same command resumes from the cache, paying for nothing twice but the
answers in flight at the kill.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._cache import cache_key
from tests.fake_openai import expected_vector

ROOT = Path(__file__).resolve().parents[1]
MODEL = "text-embedding-3-small"
DIM = 32


def command(*args):
    return [sys.executable, "-m", "skembed", *map(str, args)]


def environment(cache_dir, api_key=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SKEMBED_CACHE_DIR": str(cache_dir)}
    env.pop("OPENAI_API_KEY", None)
    if api_key is not None:
        env["OPENAI_API_KEY"] = api_key
    return env


def skembed(*args, cache_dir, api_key=None, stdin=None, timeout=120):
    return subprocess.run(
        command(*args),
        env=environment(cache_dir, api_key),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def reviews(n, seed=0):
    """A table of ``n`` reviews with string ids; some texts repeat, in both columns."""
    rng = np.random.default_rng(seed)
    words = ["soft", "tight", "lovely", "cheap", "warm", "itchy", "perfect", "short"]
    texts = [" ".join(rng.choice(words, 4)) + f" {i % max(1, n - 3)}" for i in range(n)]
    return pd.DataFrame(
        {
            "review_id": [f"r{i:04d}" for i in range(n)],
            "review_text": texts,
            "title": [f"title {i % 7}" for i in range(n)],
        }
    )


@pytest.fixture
def table(tmp_path):
    frame = reviews(40)
    path = tmp_path / "reviews.parquet"
    frame.to_parquet(path)
    return frame, path


def openai_args(server, *more):
    return ("--backend", "openai", "--base-url", server.base_url, "--dimensions", DIM, *more)


def test_openai_parquet_output_holds_the_ids_and_one_list_column_per_text_column(
    fake_server, table, tmp_path
):
    frame, path = table
    out = tmp_path / "vectors.parquet"
    done = skembed(
        "embed", path, "--column", "review_text", "--column", "title",
        "--id-column", "review_id", "--out", out, "--json", *openai_args(fake_server),
        cache_dir=tmp_path / "cache", api_key=fake_server.api_key,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = pd.read_parquet(out)
    assert list(written.columns) == ["review_id", "review_text", "title"]
    assert written["review_id"].tolist() == frame["review_id"].tolist()
    for column in ("review_text", "title"):
        got = np.stack(written[column].to_numpy())
        assert got.shape == (len(frame), DIM) and got.dtype == np.float32
        want = np.stack([expected_vector(MODEL, text, DIM) for text in frame[column]])
        np.testing.assert_allclose(got, want, atol=1e-6)
    summary = json.loads(done.stdout)
    distinct = len(set(frame["review_text"]) | set(frame["title"]))
    stats = fake_server.stats()
    assert summary["sent"] == distinct == len(stats["text_counts"])
    assert summary["tokens"] == stats["tokens"]
    assert summary["shape"] == {"review_text": [40, DIM], "title": [40, DIM]}
    assert f"{distinct} sent" in done.stderr and f"-> {out}" in done.stderr


def test_local_backend_on_parquet_writes_npz_and_npy(table, tmp_path):
    frame, path = table
    archive = tmp_path / "vectors.npz"
    done = skembed(
        "embed", path, "-c", "review_text", "--id-column", "review_id", "--out", archive,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with np.load(archive) as loaded:
        assert loaded["review_text"].shape == (len(frame), 384)
        assert loaded["review_id"].tolist() == frame["review_id"].tolist()
        first = loaded["review_text"]
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    # Again, into a .npy: every text is a cache hit now, and the vectors are the same.
    array = tmp_path / "vectors.npy"
    again = skembed(
        "embed", path, "-c", "review_text", "--out", array, cache_dir=tmp_path / "cache"
    )
    assert again.returncode == 0, again.stderr
    assert "already in the cache (resuming); 0 to embed" in again.stderr
    np.testing.assert_array_equal(np.load(array), first)


def test_csv_on_stdin(fake_server, tmp_path):
    frame = reviews(5)
    out = tmp_path / "v.parquet"
    done = skembed(
        "embed", "-", "-c", "review_text", "--out", out, *openai_args(fake_server),
        cache_dir=tmp_path / "cache", api_key=fake_server.api_key,
        stdin=frame.to_csv(index=False),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert np.stack(pd.read_parquet(out)["review_text"]).shape == (5, DIM)


@pytest.mark.parametrize("seed", [0, 1])
def test_estimate_equals_the_tokens_the_server_counts(fake_server, tmp_path, seed):
    # Part of the texts cached first, so the estimate must leave cache hits out.
    frame = reviews(60, seed)
    path = tmp_path / "reviews.parquet"
    frame.to_parquet(path)
    cache_dir = tmp_path / "cache"
    warm = frame.sample(frac=0.3, random_state=seed)
    warm.to_parquet(tmp_path / "warm.parquet")
    common = ("-c", "review_text", "-c", "title", *openai_args(fake_server))
    warmed = skembed(
        "embed", tmp_path / "warm.parquet", *common, "--out", tmp_path / "warm.npz",
        cache_dir=cache_dir, api_key=fake_server.api_key,
    )  # fmt: skip
    assert warmed.returncode == 0, warmed.stderr
    # Offline: no key, and nothing reaches the server.
    fake_server.reset_stats()
    estimate = skembed("embed", path, *common, "--estimate", "--json", cache_dir=cache_dir)
    assert estimate.returncode == 0, estimate.stderr
    assert fake_server.stats()["requests"] == 0
    estimated = json.loads(estimate.stdout)
    assert estimated["cached"] > 0 and estimated["tokens"] > 0
    done = skembed(
        "embed", path, *common, "--out", tmp_path / "all.npz",
        cache_dir=cache_dir, api_key=fake_server.api_key,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = fake_server.stats()
    assert stats["tokens"] == estimated["tokens"]
    assert len(stats["text_counts"]) == estimated["to_send"]
    assert max(stats["text_counts"].values()) == 1
    # The plain-text estimate names every column and the total.
    again = skembed("embed", path, *common, "--estimate", cache_dir=cache_dir)
    assert "review_text:" in again.stdout and "0 texts to send, 0 tokens, $0" in again.stdout


# -- exit statuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-c", "nope", "--out", "v.parquet"), "has no column 'nope'"),
        (("-c", "review_text", "-c", "title", "--out", "v.npy"), "A .npy file holds one array"),
        (("-c", "review_text", "--out", "v.csv"), "--out must end in"),
        (("-c", "review_text"), "--out PATH is required"),
        (("-c", "review_text", "--out", "v.npz", "--dimensions", "8"), "applies to --backend"),
        (("--out", "v.npz"), "required: -c/--column"),
        (("-c", "review_text", "--out", "v.npz", "--bogus"), "unrecognized arguments"),
    ],
    ids=["column", "npy", "suffix", "no-out", "local-dims", "no-column", "unknown"],
)
def test_usage_errors_exit_2(table, tmp_path, args, message):
    _, path = table
    done = skembed("embed", path, *args, cache_dir=tmp_path / "cache")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_errors_exit_1(fake_server, table, tmp_path):
    _, path = table
    missing = skembed("embed", tmp_path / "none.csv", "-c", "x", "--out", tmp_path / "v.npz",
                      cache_dir=tmp_path / "cache")  # fmt: skip
    assert missing.returncode == 1 and "No such input file" in missing.stderr
    wrong_key = skembed(
        "embed", path, "-c", "review_text", "--out", tmp_path / "v.npz",
        *openai_args(fake_server), cache_dir=tmp_path / "cache", api_key="sk-wrong",
    )  # fmt: skip
    assert wrong_key.returncode == 1
    assert "sk-wrong" not in wrong_key.stderr
    blank = pd.DataFrame({"text": ["fine", None, "also fine"]})
    blank.to_parquet(tmp_path / "blank.parquet")
    refused = skembed("embed", tmp_path / "blank.parquet", "-c", "text", "--out",
                      tmp_path / "b.npz", cache_dir=tmp_path / "cache")  # fmt: skip
    assert refused.returncode == 1 and "column 'text'" in refused.stderr
    zero = skembed("embed", tmp_path / "blank.parquet", "-c", "text", "--out", tmp_path / "b.npz",
                   "--on-invalid-text", "zero", cache_dir=tmp_path / "cache")  # fmt: skip
    assert zero.returncode == 0, zero.stderr
    assert not np.load(tmp_path / "b.npz")["text"][1].any()


def test_budget_refusals_exit_3_before_anything_is_sent(fake_server, table, tmp_path):
    _, path = table
    common = ("-c", "review_text", "--out", tmp_path / "v.npz", *openai_args(fake_server))
    key = {"cache_dir": tmp_path / "cache", "api_key": fake_server.api_key}
    over = skembed("embed", path, *common, "--max-cost", "0", **key)
    assert over.returncode == 3 and "above --max-cost 0" in over.stderr
    # A paid job above --confirm-above, stdin not a terminal: refused without --yes.
    unconfirmed = skembed("embed", path, *common, "--confirm-above", "0", **key)
    assert unconfirmed.returncode == 3 and "pass --yes" in unconfirmed.stderr
    estimate = skembed("embed", path, *common, "--estimate", "--max-cost", "0", **key)
    assert estimate.returncode == 3
    assert fake_server.stats()["requests"] == 0
    assert not (tmp_path / "v.npz").exists()
    confirmed = skembed("embed", path, *common, "--confirm-above", "0", "--yes", **key)
    assert confirmed.returncode == 0, confirmed.stderr
    # The default threshold lets a job of a fraction of a cent through.
    assert skembed("embed", path, *common, **key).returncode == 0


def test_version_and_help():
    version = subprocess.run(command("--version"), capture_output=True, text=True,
                             env=environment("/nonexistent"))  # fmt: skip
    assert version.returncode == 0
    from skembed import __version__

    assert version.stdout.strip() == f"skembed {__version__}"
    helped = subprocess.run(command("embed", "--help"), capture_output=True, text=True,
                            env=environment("/nonexistent"))  # fmt: skip
    assert helped.returncode == 0 and "3 refused by a budget" in helped.stdout


# -- kill -9, then the same command ------------------------------------------------------


def cached(cache_dir, keys):
    store = EmbeddingCache(cache_dir)
    try:
        return store.get(keys, DIM, count=False)[0]
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_then_the_same_command_resumes_paying_nothing_twice(fake_server, tmp_path, seed):
    chance = random.Random(seed)
    n = chance.randint(300, 700)
    frame = reviews(n, seed)
    frame["review_text"] = [f"{text} #{i}" for i, text in enumerate(frame["review_text"])]
    path = tmp_path / "reviews.parquet"
    frame.to_parquet(path)
    batch_size, concurrency = 10, 2
    args = command(
        "embed", path, "-c", "review_text", "--id-column", "review_id",
        "--out", tmp_path / "v.parquet", "--batch-size", batch_size,
        "--max-concurrency", concurrency, *openai_args(fake_server),
    )  # fmt: skip
    env = environment(tmp_path / "cache", fake_server.api_key)
    # Requests slower than a cache write, so that answers never queue up unwritten.
    fake_server.configure(latency=0.05)
    texts = frame["review_text"].tolist()
    namespace = (
        OpenAIEmbeddingTransformer(base_url=fake_server.base_url, dimensions=DIM)
        ._backend()
        .cache_namespace
    )
    keys = [cache_key(namespace, text) for text in texts]
    paid, lost_at_kills, in_cache = Counter(), Counter(), set()
    for _ in range(chance.randint(1, 3)):
        fake_server.reset_stats()
        job = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while fake_server.stats(texts=False)["requests"] == 0 and job.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(chance.uniform(0.0, 0.8))
        job.send_signal(signal.SIGKILL)
        job.wait()
        run_paid = Counter(fake_server.settled_stats()["text_counts"])
        now_in_cache = {
            t for t, hit in zip(texts, cached(tmp_path / "cache", keys), strict=True) if hit
        }
        # Nothing cached before the run was lost or sent again...
        assert in_cache <= now_in_cache and not in_cache & set(run_paid)
        # ...and what was paid but not cached was in flight at the kill: a request per
        # thread, plus answers arriving while the previous ones were written.
        lost = set(run_paid) - now_in_cache
        assert len(lost) <= 3 * concurrency * batch_size
        lost_at_kills.update(lost)
        paid += run_paid
        in_cache = now_in_cache
    fake_server.reset_stats()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    last = Counter(fake_server.stats()["text_counts"])
    assert set(last) == set(texts) - in_cache
    if in_cache:
        # The re-run says how much was already done, and sends none of it again.
        assert f"{len(in_cache):,} of {n:,} distinct texts already in the cache" in done.stderr
    paid += last
    assert set(paid) == set(texts)
    # Per text: paid once, plus once per kill that caught its answer in flight.
    assert all(paid[text] <= 1 + lost_at_kills[text] for text in texts)
    written = pd.read_parquet(tmp_path / "v.parquet")
    assert written["review_id"].tolist() == frame["review_id"].tolist()
    want = np.stack([expected_vector(MODEL, text, DIM) for text in frame["review_text"]])
    np.testing.assert_allclose(np.stack(written["review_text"]), want, atol=1e-6)
