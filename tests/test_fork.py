"""After ``os.fork`` each process uses its own connections: a child never reads an answer
meant for its parent or a sibling (issue 15, item 1).

The SDK's client keeps idle keep-alive connections in a pool, and a forked child inherits
the pool. The fake server's ``slow`` fault answers (and charges) a request after the
client's timeout: the answer then waits on the connection, and whichever process sends
next on a copy of that socket reads it as the answer to its own request
(``tests/test_fake_server.py::test_a_late_answer_reaches_a_forked_sibling_through_the_sdk``).
The property: whatever the number of children, the timeouts and the texts, every vector a
child returns, and every vector in a cache the children share, is its own text's.
"""

import json
import os
import random
import time

import numpy as np
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer, _fork
from skembed._cache import cache_key
from skembed.backends._redis_rate_limit import RedisRateLimiter
from tests._backends import openai_backend, openai_batch_backend
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIM = 32
TIMEOUT = 0.25  # the client's; a slow answer comes after SLOW seconds
SLOW = 0.5

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _texts(rng, child, n):
    return [
        f"child {child} text {rng.randrange(10**9)} {'x' * rng.randrange(30)}" for _ in range(n)
    ]


def _wrong_rows(texts, X):
    expected = np.stack([expected_vector(MODEL, text, DIM) for text in texts])
    return int((~np.isclose(X, expected, atol=1e-5).all(axis=1)).sum())


def _run_child(embedders, texts, write_end):
    """In the child: embed with each embedder, report wrong rows, never return."""
    code = 1
    try:
        report = {}
        for name, embedder in embedders.items():
            report[name] = _wrong_rows(texts[name], embedder.transform(texts[name]))
        os.write(write_end, json.dumps(report).encode())
        code = 0
    except BaseException as error:
        os.write(write_end, json.dumps({"error": repr(error)[:500]}).encode())
    finally:
        os._exit(code)


def _fork_children(embedders, texts_of_child):
    children = []
    for texts in texts_of_child:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _run_child(embedders, texts, write_end)
        os.close(write_end)
        children.append((pid, read_end))
    reports = []
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        status = os.waitpid(pid, 0)[1]
        reports.append((os.waitstatus_to_exitcode(status), json.loads(data or b"{}")))
    return reports


@pytest.mark.parametrize(
    ("route", "seed"), [("openai", 0), ("openai", 1), ("openai", 2), ("azure", 3)]
)
def test_forked_children_only_ever_get_their_own_vectors(
    fake_server, monkeypatch, tmp_path, seed, route
):
    rng = random.Random(seed)
    n_children = rng.randint(2, 4)
    common = {
        "dimensions": DIM,
        "timeout": TIMEOUT,
        "batch_size": rng.randint(1, 3),
        "max_concurrency": rng.randint(1, 2),
        "max_retries": 12,
    }
    if route == "azure":
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", fake_server.api_key)
        common.update(base_url=fake_server.url, api_version="2024-02-01")
    else:
        common.update(base_url=fake_server.base_url)
    cache_dir = str(tmp_path / "cache")
    embedders = {
        "no_cache": OpenAIEmbeddingTransformer(cache=None, **common),
        "shared_cache": OpenAIEmbeddingTransformer(cache=cache_dir, **common),
    }
    # The parent's clients are live and warm: an idle keep-alive connection each.
    for name, embedder in embedders.items():
        embedder.transform([f"warm-up {name} {seed}"])
    # From now on random requests (and the first one) are answered after the children's
    # timeout.
    fake_server.configure(
        faults=[{"kind": "slow"}],
        p_slow=rng.uniform(0.15, 0.3),
        timeout_seconds=SLOW,
        fault_seed=seed,
    )
    texts_of_child = [
        {name: _texts(rng, child, rng.randint(3, 8)) for name in embedders}
        for child in range(n_children)
    ]
    reports = _fork_children(embedders, texts_of_child)
    assert all(code == 0 for code, _ in reports), reports
    # Every vector each child returned is its own text's.
    assert all(report == {"no_cache": 0, "shared_cache": 0} for _, report in reports), reports
    # And so is every vector the children put in the cache they share.
    shared = [text for texts in texts_of_child for text in texts["shared_cache"]]
    namespace = embedders["shared_cache"]._backend().cache_namespace
    store = EmbeddingCache(cache_dir)
    found, vectors = store.get([cache_key(namespace, text) for text in shared], DIM)
    store.close()
    assert found.all()
    assert _wrong_rows(shared, vectors) == 0
    # Late answers came: a slow answer is counted once written, which can be after the
    # children (whose retries were answered meanwhile) are gone.
    deadline = time.monotonic() + SLOW + 5
    while (
        fake_server.stats()["requests_by_status"].get("slow", 0) == 0
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert fake_server.stats()["requests_by_status"].get("slow", 0) > 0


def _flat_inherited():
    return [handle for handles in _fork._inherited for handle in handles]


@pytest.mark.parametrize("kind", ["openai", "azure", "batch", "redis-rate-limiter"])
def test_a_child_builds_its_own_client_and_leaves_the_parents_open(fake_server, monkeypatch, kind):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", fake_server.api_key)
    if kind == "redis-rate-limiter":
        pytest.importorskip("redis")
        holder = RedisRateLimiter("redis://127.0.0.1:9/0", "test|fork")._script
        build = object  # the holder is what is tested: a fresh handle per process
    else:
        if kind == "batch":
            backend = openai_batch_backend(base_url=fake_server.base_url)
        elif kind == "azure":
            backend = openai_backend(base_url=fake_server.url, api_version="2024-02-01")
        else:
            backend = openai_backend(base_url=fake_server.base_url)
        holder, build = backend._client, backend._build_client
    parent = holder.get(build)
    assert holder.get(build) is parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            child = holder.get(build)
            facts = [
                child is not parent,
                holder.get(build) is child,
                any(handle is parent for handle in _flat_inherited()),  # kept, not closed
                getattr(parent, "is_closed", lambda: False)() is False,
            ]
            os.write(write_end, json.dumps(facts).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        facts = json.loads(pipe.read())
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert facts == [True, True, True, True]
    assert holder.get(build) is parent  # the parent's own is untouched
