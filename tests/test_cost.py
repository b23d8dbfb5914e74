"""Cost controls: estimates against what the fake server counts, budgets, usage reports."""

import logging
import pickle
import subprocess
import sys

import numpy as np
import pytest

from skembed import OpenAIEmbeddingTransformer
from skembed._cost import CostEstimate
from skembed._embed import embed_texts
from skembed._spending import Budget, budget
from skembed._tokens import count_tokens, truncate_text
from skembed._usage import UsageReport, track_usage
from skembed.backends import EmbeddingError, InputTooLongError
from skembed.backends._base import BudgetExceededError, RequestMeter

MODEL = "text-embedding-3-small"
PRICE = 0.02  # USD per 1M tokens, text-embedding-3-small's list price

# Cut at 8192 tokens, this text's last whole character ends at 8191: what is sent
# (and billed) is one token less than the limit.
AWKWARD_LONG = " ".join(["cat"] * 8187) + " 漢" * 200
LONG = "lorem ipsum dolor sit amet " * 2000  # ~10k tokens


def corpus(n=300, seed=0):
    """Short texts with duplicates, a few long ones."""
    rng = np.random.default_rng(seed)
    words = ["price", "fit", "size", "colour", "soft", "tight", "love", "return", "é", "漢字"]
    distinct = [" ".join(rng.choice(words, rng.integers(1, 40))) + f" #{i}" for i in range(n)]
    return distinct + distinct[: n // 3] + [LONG, AWKWARD_LONG, LONG]


def test_awkward_text_is_billed_below_the_limit():
    # Guards the premise of the truncation cases below.
    assert count_tokens([truncate_text(AWKWARD_LONG, 8192)])[0] == 8191


@pytest.mark.parametrize(
    "params",
    [
        {"long_input": "truncate"},
        {"long_input": "chunk", "dimensions": 256},
        {"long_input": "chunk", "model": "text-embedding-3-large"},
    ],
)
def test_estimate_equals_the_tokens_the_server_counts(
    fake_server, openai_embedder, tmp_path, params
):
    texts = corpus()
    embedder = openai_embedder(cache=tmp_path / "cache", batch_size=64, **params)
    warm = [*texts[:100], LONG]  # already paid for: free from now on
    embedder.transform(warm)
    fake_server.reset_stats()

    estimate = embedder.estimate_cost(texts)
    assert fake_server.stats(texts=False)["requests"] == 0
    assert estimate.n_texts == len(texts)
    assert estimate.n_unique == len(set(texts))
    assert estimate.n_cached == len(set(warm))

    embedder.transform(texts)
    stats = fake_server.stats()
    assert stats["tokens"] == estimate.n_tokens
    assert len(stats["text_counts"]) >= estimate.n_to_send  # chunks are extra inputs
    price = 0.13 if params.get("model") == "text-embedding-3-large" else PRICE
    assert estimate.usd == pytest.approx(estimate.n_tokens * price / 1e6)
    # Everything is cached now.
    again = embedder.estimate_cost(texts)
    assert (again.n_cached, again.n_tokens, again.usd) == (again.n_unique, 0, 0.0)


def test_estimate_without_cache_counts_each_distinct_text_once(openai_embedder):
    texts = ["tiktoken is great!", "a", "a", "tiktoken is great!"]
    estimate = openai_embedder().estimate_cost(texts)
    assert (estimate.n_unique, estimate.n_cached, estimate.n_tokens) == (2, 0, 7)


def test_estimate_is_offline_and_needs_no_key(fake_server, openai_embedder, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY")
    estimate = openai_embedder(cache=tmp_path).estimate_cost(["a text", "another"])
    assert estimate.n_tokens == count_tokens(["a text", "another"]).sum()
    assert fake_server.stats(texts=False)["requests"] == 0


def test_estimate_validates_like_transform(fake_server, openai_embedder):
    embedder = openai_embedder()
    for bad in ("a bare string", ["ok", None]):
        with pytest.raises(ValueError) as from_transform:
            embedder.transform(bad)
        with pytest.raises(ValueError) as from_estimate:
            embedder.estimate_cost(bad)
        assert str(from_estimate.value) == str(from_transform.value)
    # A long text under long_input="error", after a blank row that is zeroed: both
    # name the user's row 2.
    embedder.set_params(on_invalid_text="zero")
    errors = []
    for method in (embedder.estimate_cost, embedder.transform):
        with pytest.raises(InputTooLongError) as caught:
            method(["", "fine", LONG])
        errors.append(caught.value)
    assert errors[0].rows == errors[1].rows == (2,)
    assert str(errors[0]) == str(errors[1])
    assert fake_server.stats(texts=False)["requests"] == 0


def test_unknown_price_and_price_override():
    unknown = OpenAIEmbeddingTransformer(model="my-model", dimensions=8, cache=None)
    assert unknown.estimate_cost(["hello world"]).usd is None
    assert "unknown cost" in str(unknown.estimate_cost(["hello world"]))
    priced = unknown.set_params(usd_per_million_tokens=1.0)
    assert priced.estimate_cost(["hello world"]).usd == pytest.approx(2e-6)


# -- budgets --------------------------------------------------------------------------


def test_budget_refuses_before_any_request(fake_server, openai_embedder):
    texts = [f"review number {i}, soft and comfortable" for i in range(50)]
    embedder = openai_embedder()
    estimate = embedder.estimate_cost(texts)
    for params, limit in (
        ({"max_tokens": estimate.n_tokens - 1}, f"max_tokens={estimate.n_tokens - 1:,}"),
        ({"max_cost": estimate.usd * 0.99}, "max_cost="),
    ):
        with pytest.raises(BudgetExceededError) as caught:
            embedder.set_params(**params).transform(texts)
        message = str(caught.value)
        assert f"{estimate.n_tokens:,} tokens" in message
        assert limit in message
        assert "Raise the limit" in message and "cache" in message
        assert isinstance(caught.value, EmbeddingError)
        embedder.set_params(max_tokens=None, max_cost=None)
    assert fake_server.stats(texts=False)["requests"] == 0
    # Exactly the estimate is allowed.
    embedder.set_params(max_tokens=estimate.n_tokens, max_cost=estimate.usd).transform(texts)
    assert fake_server.stats(texts=False)["tokens"] == estimate.n_tokens


def test_cached_texts_do_not_count_against_the_budget(fake_server, openai_embedder, tmp_path):
    texts = [f"a review about fabric {i}" for i in range(80)]
    embedder = openai_embedder(cache=tmp_path)
    embedder.transform(texts[:60])
    rest = int(count_tokens(texts[60:]).sum())
    fake_server.reset_stats()
    with pytest.raises(BudgetExceededError):
        embedder.set_params(max_tokens=rest - 1).transform(texts)
    assert fake_server.stats(texts=False)["requests"] == 0
    embedder.set_params(max_tokens=rest).transform(texts)
    assert fake_server.stats(texts=False)["tokens"] == rest


def test_budget_block_spans_calls_and_keeps_what_was_received(
    fake_server, openai_embedder, tmp_path
):
    first = [f"first batch text {i}" for i in range(40)]
    second = [f"second batch text {i}" for i in range(40)]
    embedder = openai_embedder(cache=tmp_path)
    n_first, n_second = (int(count_tokens(t).sum()) for t in (first, second))
    with budget(max_tokens=n_first + n_second - 1) as spent:
        X = embedder.transform(first)
        assert spent.tokens == n_first
        with pytest.raises(BudgetExceededError) as caught:
            embedder.transform(second)
        assert "skembed.budget() block" in str(caught.value)
        assert f"{n_first:,} tokens already spent" in str(caught.value)
        # What was received is cached, hence free.
        np.testing.assert_array_equal(embedder.transform(first), X)
    assert fake_server.stats(texts=False)["tokens"] == n_first
    assert spent.tokens == n_first
    # Outside the block no limit applies.
    embedder.transform(second)


def test_budget_blocks_nest_and_cost_limits_need_a_price(fake_server, openai_embedder):
    texts = ["one text", "two texts"]
    n_tokens = int(count_tokens(texts).sum())
    embedder = openai_embedder()
    with budget(max_cost=1.0), budget(max_tokens=n_tokens - 1), pytest.raises(BudgetExceededError):
        embedder.transform(texts)
    fake_server.configure(extra_models={"my-model": 8})
    unknown = openai_embedder(model="my-model", dimensions=8)
    with budget(max_cost=1.0), pytest.raises(ValueError, match="usd_per_million_tokens"):
        unknown.transform(texts)
    assert fake_server.stats(texts=False)["requests"] == 0
    with budget(max_cost=1.0) as spent:
        unknown.set_params(usd_per_million_tokens=100.0).transform(texts)
    assert spent.usd == pytest.approx(n_tokens * 100.0 / 1e6)


def test_bad_budget_values_are_refused():
    with pytest.raises(ValueError, match="max_cost"), budget(max_cost=-1):
        pass
    with pytest.raises(ValueError, match="max_tokens"):
        OpenAIEmbeddingTransformer(max_tokens=-5).fit(["a"])


def test_errors_are_not_billed_but_lost_answers_may_be(fake_server, openai_embedder):
    texts = [f"short text {i}" for i in range(10)]
    n_tokens = int(count_tokens(texts).sum())
    embedder = openai_embedder(max_tokens=n_tokens, max_retries=2)
    # A 500 is not billed: its retry fits in a budget of exactly the job.
    fake_server.configure(faults=[{"kind": "500", "retry_after": 0}])
    embedder.transform(texts)
    assert fake_server.stats(texts=False)["requests"] == 2
    # A dropped connection may have been billed: the retry would cross the limit.
    fake_server.reset()
    fake_server.configure(faults=[{"kind": "drop"}])
    with pytest.raises(BudgetExceededError, match="perhaps billed"):
        embedder.transform(texts)
    assert fake_server.stats(texts=False)["requests"] == 1


def test_request_meter_counts_and_stops():
    meter = RequestMeter(limit=10)
    meter.reserve(4)
    meter.settle(4, billed=False)
    meter.reserve(6)
    meter.settle(6, billed=None)
    meter.reserve(4)
    meter.settle(4, billed=True)
    assert (meter.requests, meter.tokens, meter.tokens_unsure) == (3, 4, 6)
    with pytest.raises(BudgetExceededError) as caught:
        meter.reserve(1)
    assert (caught.value.limit, caught.value.needed, caught.value.unit) == (10, 11, "tokens")


def test_request_meter_charges_what_is_billed_not_the_bound_it_reserved():
    # A request sent on an upper bound of its tokens (a probe not yet counted): the
    # bound is reserved and released; the exact count is what is billed.
    meter = RequestMeter()
    meter.reserve(100)
    meter.settle(100, billed=None, n_billed=30)
    meter.reserve(100)
    meter.settle(100, billed=False, n_billed=30)
    meter.reserve(100)
    meter.settle(100, billed=True, n_billed=30)
    assert (meter.requests, meter.tokens, meter.tokens_unsure, meter.committed) == (3, 30, 30, 60)


def test_budget_error_survives_pickling():
    error = BudgetExceededError("over", limit=5.0, needed=6.5, unit="USD")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.limit, copy.needed, copy.unit) == (
        BudgetExceededError,
        "over",
        5.0,
        6.5,
        "USD",
    )


class FreeBackend:
    """A backend that does not pay per text: a local model, which costs nothing."""

    cache_namespace = "free"
    model_name = "FreeBackend"
    n_dimensions = 2
    pays_per_text = False
    resumable = False
    usd_per_million_tokens = 0.0

    def check_inputs(self, texts):
        pass

    def count_billed_tokens(self, texts):
        return np.zeros(len(texts), dtype=np.int64)

    def embed(self, texts, on_result=None, meter=None):
        vectors = np.tile(np.float32([0.6, 0.8]), (len(texts), 1))
        if on_result is not None:
            on_result(np.arange(len(texts)), vectors)
        return vectors


def test_free_backends_pass_any_budget_and_report_no_tokens():
    with budget(max_tokens=0, max_cost=0), track_usage() as usage:
        vectors, report = embed_texts(["a", "b", "a"], FreeBackend())
    assert vectors.shape == (3, 2)
    assert (report.n_embedded, report.n_tokens, report.n_requests, report.usd) == (2, 0, 0, 0)
    assert usage.by_model["FreeBackend"].n_sent == 2


# -- usage reports --------------------------------------------------------------------


def test_usage_report_matches_the_server(fake_server, openai_embedder, tmp_path, caplog):
    small = openai_embedder(cache=tmp_path, batch_size=16)
    large = openai_embedder(cache=tmp_path, model="text-embedding-3-large")
    texts = [f"comfortable dress number {i}" for i in range(60)]
    fake_server.configure(faults=[{"kind": "503", "retry_after": 0}])
    with track_usage() as usage, caplog.at_level(logging.INFO, logger="skembed"):
        small.transform(texts[:40])
        small.transform(texts + texts[:5])  # 40 from cache
        large.transform(texts[:10])
    stats = fake_server.stats()
    assert usage.n_tokens == stats["tokens"]
    assert usage.n_requests == stats["requests"]  # the 503 and its retry included
    assert usage.n_sent == stats["inputs"] == 70
    assert usage.n_calls == 3
    assert usage.n_rows == 40 + 65 + 10
    assert usage.n_cache_hits == 40
    by_model = usage.by_model
    small_tokens = int(count_tokens(texts).sum())
    assert by_model[MODEL].n_tokens == small_tokens
    assert by_model[MODEL].usd == pytest.approx(small_tokens * PRICE / 1e6)
    assert by_model["text-embedding-3-large"].usd == pytest.approx(
        count_tokens(texts[:10]).sum() * 0.13 / 1e6
    )
    table = str(usage)
    assert table.splitlines()[0].split()[:3] == ["model", "calls", "rows"]
    assert table.splitlines()[-1].startswith("total")
    logged = [r.getMessage() for r in caplog.records if r.name == "skembed"]
    assert any("60 distinct" in m and "from cache" in m and " tokens, $" in m for m in logged)


def test_usage_counts_failed_calls(fake_server, openai_embedder):
    texts = [f"text {i}" for i in range(20)]
    embedder = openai_embedder(max_retries=0, batch_size=10, max_concurrency=1)
    fake_server.configure(faults=[{"kind": "ok"}, {"kind": "500"}])
    with track_usage() as usage, pytest.raises(EmbeddingError):
        embedder.transform(texts)
    stats = fake_server.stats(texts=False)
    assert (
        (usage.n_requests, usage.n_tokens)
        == (stats["requests"], stats["tokens"])
        == (
            2,
            int(count_tokens(texts[:10]).sum()),
        )
    )


def test_no_key_in_any_report(fake_server, openai_embedder, tmp_path, caplog):
    key = fake_server.api_key
    embedder = openai_embedder(cache=tmp_path, max_tokens=10**6)
    with (
        track_usage() as usage,
        budget(max_cost=1.0) as spent,
        caplog.at_level(logging.DEBUG, logger="skembed"),
    ):
        estimate = embedder.estimate_cost(["a", "b"])
        embedder.transform(["a", "b"])
        with pytest.raises(BudgetExceededError) as caught:
            embedder.set_params(max_tokens=1).transform(["c", "d"])
    shown = [repr(estimate), str(estimate), repr(usage), str(usage), repr(spent)]
    shown += [str(caught.value), repr(caught.value), repr(embedder), caplog.text]
    assert all(key not in text for text in shown)
    assert isinstance(estimate, CostEstimate)
    assert isinstance(usage, UsageReport) and isinstance(spent, Budget)


def test_cost_plumbing_imports_no_sklearn():
    code = (
        "import sys, skembed._cost, skembed._usage, skembed._embed, skembed.backends._openai; "
        "sys.exit('sklearn' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_model_of_unknown_width_is_counted_and_limited(fake_server, openai_embedder, tmp_path):
    # Its width is learned from one text before the cache can be read: that text is
    # paid for, checked against the budget, and reported as sent, not as a cache hit.
    fake_server.configure(extra_models={"my-model": 8})
    texts = [f"text {i}" for i in range(30)]
    embedder = openai_embedder(model="my-model", cache=tmp_path)
    n_tokens = int(count_tokens(texts).sum())
    with pytest.raises(BudgetExceededError):
        embedder.set_params(max_tokens=1).transform(texts)
    assert fake_server.stats(texts=False)["requests"] == 0
    with track_usage() as usage:
        embedder.set_params(max_tokens=n_tokens).transform(texts)
    stats = fake_server.stats(texts=False)
    assert (usage.n_sent, usage.n_cache_hits, usage.n_tokens) == (30, 0, stats["tokens"])
    assert usage.usd is None and stats["tokens"] == n_tokens
