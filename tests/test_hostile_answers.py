"""The server's answers are hostile: vectors of any magnitude, zero and non-finite rows,
malformed indices, widths that change between answers.

The promises, tested as properties over random servers (the fake's row knobs drawn per
seed, predicted with ``row_fate``/``expected_wire_row``): no zero, NaN or non-unit row is
ever returned or cached; every row returned or cached is its own text's vector
(``expected_vector``, direction-wise, up to float32 rounding); a row that cannot be
normalised fails naming the user's rows, while the good rows of the same answer are kept
and cached, so that no text of an answer is paid twice (``/stats`` ``text_counts``); an
answer with a malformed ``index`` or another width is refused as a whole, never guessed.
"""

import itertools

import numpy as np
import pytest

from skembed import EmbeddingCache
from skembed._cache import cache_key
from skembed._tokens import chunk_text, count_tokens
from skembed.backends import EmbeddingAPIError
from skembed.backends._openai import PROBE_MAX_INPUTS
from tests._backends import openai_backend
from tests.fake_openai import expected_vector, expected_wire_row, row_fate, wire_items

MODEL = "text-embedding-3-small"
DIM = 16
LIMIT = 8192  # text-embedding-3-small's input limit, in tokens
COMBINATIONS = list(
    itertools.product(
        ["base64", "float"], ["error", "chunk"], [True, False], [(-30, 30), (-300, 300)]
    )
)
SEEDS = range(len(COMBINATIONS))


def _words(rng, n):
    vocabulary = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "tau"]
    return " ".join(rng.choice(vocabulary, size=n))


def _texts(rng, long_input):
    """Random short texts (some repeated), and a few long ones when they are chunked."""
    n = int(rng.integers(5, 50))
    texts = [f"{i} {_words(rng, int(rng.integers(1, 6)))}" for i in range(n)]
    if long_input == "chunk":
        # Over the limit: 2 or 3 chunks each, every chunk a row of its own on the wire.
        texts += [f"long {i} " + _words(rng, int(rng.integers(9000, 20000))) for i in range(2)]
    rows = list(rng.permutation(texts + list(rng.choice(texts, size=n // 4))))
    return [str(t) for t in rows]


def _pieces(text, long_input):
    """The inputs sent for ``text`` and their token counts (as the job cuts them)."""
    if long_input == "chunk" and count_tokens([text])[0] > LIMIT:
        return chunk_text(text, LIMIT, "cl100k_base")
    return [(text, 1)]


def _truth(text, long_input):
    """The text's vector as the API defines it: its own, or its chunks' weighted mean."""
    pieces = _pieces(text, long_input)
    mean = sum(n * expected_vector(MODEL, piece, DIM).astype(np.float64) for piece, n in pieces)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def _is_bad(text, long_input, knobs, encoding_format):
    """Whether some input of ``text`` comes off the wire without a direction."""
    for piece, _ in _pieces(text, long_input):
        fate = row_fate(piece, DIM, **knobs)
        if fate.kind != "scaled":
            return True
        wire = expected_wire_row(MODEL, piece, DIM, encoding_format=encoding_format, **knobs)
        # Beyond float32's range (base64 only) a value is inf; below it, a row of
        # subnormals (or zeros) no longer says where it points.
        if not np.isfinite(wire).all():
            return True
        largest = float(np.abs(wire).max())
        norm = largest * np.linalg.norm(wire.astype(np.float64) / largest) if largest else 0.0
        if norm < np.finfo(wire.dtype).tiny * np.sqrt(DIM):
            return True
    return False


def _assert_own_unit_rows(vectors, texts, long_input):
    """Every row is unit-norm and points where its own text's vector points."""
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    for vector, text in zip(vectors, texts, strict=True):
        np.testing.assert_allclose(vector, _truth(text, long_input), atol=2e-6)


def _cached(cache, namespace, texts):
    found, vectors = cache.get([cache_key(namespace, t) for t in texts], DIM, count=False)
    return found, vectors


@pytest.mark.parametrize("seed", SEEDS)
def test_hostile_magnitudes_zero_and_nonfinite_rows(fake_server, openai_embedder, tmp_path, seed):
    rng = np.random.default_rng(seed)
    # Each combination once; the promised magnitudes, and far beyond float32's range
    # (where base64 rows overflow to inf or vanish, and only JSON numbers keep them).
    encoding_format, long_input, with_cache, (low, high) = COMBINATIONS[seed]
    knobs = {
        "fault_seed": seed,
        "vector_log10_scale": [low, high],
        "p_zero_row": float(rng.uniform(0.03, 0.15)),
        "p_nonfinite_row": float(rng.uniform(0.03, 0.15)),
    }
    fake_server.configure(**knobs)
    texts = _texts(rng, long_input)
    # At least one zero or non-finite row, wherever the draw puts it.
    extra = (f"extra {seed} {k}" for k in itertools.count())
    texts.insert(
        int(rng.integers(len(texts))),
        next(t for t in extra if row_fate(t, DIM, **knobs).kind != "scaled"),
    )
    distinct = list(dict.fromkeys(texts))
    bad = {t for t in distinct if _is_bad(t, long_input, knobs, encoding_format)}
    cache = EmbeddingCache(tmp_path / "cache") if with_cache else None
    embedder = openai_embedder(
        dimensions=DIM,
        encoding_format=encoding_format,
        long_input=long_input,
        cache=cache,
        batch_size=int(rng.integers(1, 20)),
        max_concurrency=int(rng.integers(1, 5)),
    )
    namespace = embedder._backend().cache_namespace

    # Beyond float32's range, base64 breaks most rows: the job may then stop early.
    broken = 2 * len(bad) > len(distinct)
    try:
        X = embedder.transform(texts)
    except EmbeddingAPIError as error:
        assert bad, str(error)
        named = {texts[row] for row in error.rows}
        assert "cannot be normalised" in str(error)
        assert set(error.rows) == {i for i, t in enumerate(texts) if t in named}
        if "seems broken" in str(error):
            assert broken and named <= bad, str(error)
        else:
            # Every bad text is named, with every user row that holds it, and nothing
            # else: the job went on past them and reports them all at its end.
            assert named == bad, (named ^ bad, str(error))
    else:
        assert not bad
        _assert_own_unit_rows(X, texts, long_input)
    if cache is not None:
        found, vectors = _cached(cache, namespace, distinct)
        # Nothing bad was cached; every good row was kept, unit and its text's own.
        stored = [t for t, hit in zip(distinct, found, strict=True) if hit]
        _assert_own_unit_rows(vectors[found], stored, long_input)
        assert not set(stored) & bad
        if broken:
            cache.close()
            return
        assert set(stored) == set(distinct) - bad
        # A re-run sends the bad texts only: no text of an answer is paid twice.
        X_again = None
        try:
            X_again = embedder.transform(texts)
        except EmbeddingAPIError as error:
            assert {texts[row] for row in error.rows} == bad
        counts = fake_server.stats()["text_counts"]
        for text in distinct:
            for piece, _ in _pieces(text, long_input):
                if text not in bad:
                    assert counts[piece] == 1, text[:40]
        if X_again is not None:
            _assert_own_unit_rows(X_again, texts, long_input)
        cache.close()


@pytest.mark.parametrize("seed", range(4))
def test_the_good_rows_of_an_answer_with_a_bad_row_are_cached_at_once(
    fake_server, openai_embedder, tmp_path, seed
):
    # One request, one zero row in it: the error names that row only, and the rest of
    # the answer is in the cache when it surfaces (a re-run sends the bad row alone).
    rng = np.random.default_rng(100 + seed)
    knobs = {"fault_seed": seed, "p_zero_row": 0.2}
    fake_server.configure(**knobs)
    # Fewer texts than a job that is probed first (see OpenAIBackend._probe_size).
    texts = [f"answer {seed} row {i}" for i in range(int(rng.integers(10, 2 * PROBE_MAX_INPUTS)))]
    zero = [i for i, t in enumerate(texts) if row_fate(t, DIM, **knobs).kind == "zero"]
    if not zero:
        pytest.skip("this seed draws no zero row")
    cache = EmbeddingCache(tmp_path / "cache")
    embedder = openai_embedder(dimensions=DIM, cache=cache, batch_size=64, max_concurrency=1)
    with pytest.raises(EmbeddingAPIError, match=r"all zeros: \d+") as caught:
        embedder.transform(texts)
    assert list(caught.value.rows) == zero
    assert fake_server.stats()["requests"] == 1
    found, vectors = _cached(cache, embedder._backend().cache_namespace, texts)
    assert np.flatnonzero(~found).tolist() == zero
    _assert_own_unit_rows(vectors[found], np.array(texts)[found], "error")
    fake_server.reset_stats()
    with pytest.raises(EmbeddingAPIError):
        embedder.transform(texts)
    assert set(fake_server.stats()["text_counts"]) == {texts[i] for i in zero}
    cache.close()


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_a_server_that_breaks_every_row_stops_the_job(
    fake_server, openai_embedder, tmp_path, batch_size
):
    # Every row zero: not the texts' fault. The job stops once most of 32 inputs or
    # more are refused, rather than paying for all 600 to get nothing.
    fake_server.configure(p_zero_row=1.0, latency=0.01)
    texts = [f"broken {i}" for i in range(600)]
    concurrency = 2
    with pytest.raises(EmbeddingAPIError, match="seems broken, so the job was stopped"):
        openai_embedder(
            dimensions=DIM,
            cache=EmbeddingCache(tmp_path / "c"),
            batch_size=batch_size,
            max_concurrency=concurrency,
        ).transform(texts)
    # The answers that reach 32 inputs, then what each thread had in flight or was
    # starting when the job heard of it.
    stats = fake_server.stats()
    assert stats["requests"] <= -(-32 // batch_size) + 2 * concurrency
    assert stats["inputs"] < len(texts) / 2


@pytest.mark.parametrize("index_fault", ["fractional", "duplicate", "missing"])
@pytest.mark.parametrize("encoding_format", ["base64", "float"])
def test_a_malformed_index_refuses_the_whole_answer(
    fake_server, openai_embedder, tmp_path, index_fault, encoding_format
):
    rng = np.random.default_rng(len(index_fault) + len(encoding_format))
    fake_server.configure(index_fault=index_fault)
    for n in rng.integers(1, 30, size=3).tolist():
        texts = [f"{index_fault} {n} {i}" for i in range(n)]
        assert wire_items(n, index_fault) != [(i, i) for i in range(n)]
        cache = EmbeddingCache(tmp_path / f"cache-{n}")
        embedder = openai_embedder(
            dimensions=DIM, encoding_format=encoding_format, cache=cache, batch_size=64
        )
        with pytest.raises(EmbeddingAPIError, match="malformed answer.*index") as caught:
            embedder.transform(texts)
        assert sorted(caught.value.rows) == list(range(n))
        # Nothing of an answer that cannot be matched to its texts is kept.
        found, _ = _cached(cache, embedder._backend().cache_namespace, texts)
        assert not found.any()
        cache.close()


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (2.5, "index 2.5, which is not an integer"),
        (2.0, "index 2.0, which is not an integer"),
        (True, "index True, which is not an integer"),
        ("2", "index '2', which is not an integer"),
        (7, "index 7 out of range; index 2 missing"),
        (1, "index 1 repeated; index 2 missing"),
    ],
)
def test_decoding_refuses_every_kind_of_bad_index(index, message):
    backend = openai_backend(dimensions=2)  # decoding needs no client
    items = [{"index": i, "embedding": [0.6, 0.8]} for i in (0, 1)]
    items.append({"index": index, "embedding": [0.8, 0.6]})
    with pytest.raises(Exception, match=message.replace("(", r"\(")) as caught:
        backend._decode_body({"data": items}, 3)
    assert type(caught.value).__name__ == "_Malformed"


def _width_plan(rng):
    """A random width sequence: a first width kept for a while, then perhaps others."""
    widths = [1, 2, 8, 40]
    first = int(rng.choice(widths))
    sequence = [first] * int(rng.integers(1, 8))
    if rng.random() < 0.8:
        sequence += [int(w) for w in rng.choice(widths, size=int(rng.integers(1, 3)))]
    return sequence


@pytest.mark.parametrize("seed", range(10))
def test_a_width_change_between_answers_is_an_error_and_stops_the_job(
    fake_server, openai_embedder, tmp_path, seed
):
    rng = np.random.default_rng(seed)
    sequence = _width_plan(rng)
    concurrency = int(rng.choice([1, 3]))
    with_cache = bool(rng.integers(2))
    fake_server.configure(extra_models={"house-model": 40}, width_sequence=sequence)
    texts = [f"width {seed} text {i}" for i in range(int(rng.integers(3, 14)))]
    cache = EmbeddingCache(tmp_path / "cache") if with_cache else None
    # One text per request: answer k is request k (in order, with one thread).
    embedder = openai_embedder(
        model="house-model", cache=cache, batch_size=1, max_concurrency=concurrency
    )
    backend = embedder._backend()
    served = [sequence[min(k, len(sequence) - 1)] for k in range(len(texts))]
    changes = [k for k in range(1, len(served)) if served[k] != served[0]]
    try:
        X = embedder.transform(texts)
    except EmbeddingAPIError as error:
        assert changes, str(error)
        assert "-d vectors, but" in str(error)
        requests = fake_server.stats()["requests"]
        if concurrency == 1:
            # The first answer of another width ends the job: nothing planned after it
            # is sent, and it names that answer's row.
            assert requests == changes[0] + 1
            assert list(error.rows) == [changes[0]]
        else:
            assert requests <= changes[0] + concurrency
    else:
        assert not changes
        assert X.shape == (len(texts), served[0])
        want = [expected_vector("house-model", t, native_dim=served[0]) for t in texts]
        np.testing.assert_allclose(X, np.stack(want), atol=1e-6)
    width = backend.n_dimensions  # pinned by the first answer decoded
    assert width in sequence
    if cache is not None:
        found, vectors = cache.get(
            [cache_key(backend.cache_namespace, t) for t in texts], width, count=False
        )
        if concurrency == 1:
            # Every answer before the change was kept (it is paid for).
            assert found.sum() == (changes[0] if changes else len(texts))
        stored = np.array(texts)[found]
        want = [expected_vector("house-model", t, native_dim=width) for t in stored]
        np.testing.assert_allclose(vectors[found], np.stack(want).reshape(-1, width), atol=1e-6)
        cache.close()


@pytest.mark.parametrize("seed", range(3))
def test_batch_api_keeps_the_good_rows_of_a_line_and_resubmits_only_the_bad(
    fake_server, openai_embedder, tmp_path, seed
):
    # The row knobs apply to Batch API output lines too: a line with a bad row delivers
    # the others at once; only the bad rows are resubmitted, then named.
    rng = np.random.default_rng(200 + seed)
    fake_server.configure_batches(completion_seconds=0.05)
    knobs = {"fault_seed": seed, "p_zero_row": 0.1, "p_nonfinite_row": 0.1}
    knobs["vector_log10_scale"] = [-30, 30]
    fake_server.configure(**knobs)
    texts = [f"batch {seed} {i}" for i in range(int(rng.integers(10, 40)))]
    bad = {t for t in texts if row_fate(t, DIM, **knobs).kind != "scaled"}
    cache = EmbeddingCache(tmp_path / "cache")
    embedder = openai_embedder(
        dimensions=DIM, cache=cache, batch_api=True, batch_size=8, batch_poll_interval=0.02
    )
    if bad:
        with pytest.raises(EmbeddingAPIError, match="cannot be normalised") as caught:
            embedder.transform(texts)
        assert {texts[row] for row in caught.value.rows} == bad
    else:
        _assert_own_unit_rows(embedder.transform(texts), texts, "error")
    found, vectors = _cached(cache, embedder._backend().cache_namespace, texts)
    assert {t for t, hit in zip(texts, found, strict=True) if not hit} == bad
    _assert_own_unit_rows(vectors[found], np.array(texts)[found], "error")
    counts = fake_server.stats()["text_counts"]
    assert all(counts[t] == 1 for t in set(texts) - bad)
    cache.close()
