"""The API key never leaves the environment: a canary key, hunted everywhere it could land.

A random canary key is the only key the fake server accepts (or, for the 401 cases, the
wrong one). After every kind of call (success, 401, 400, 500 until retries run out,
timeouts, a dropped connection, an unreachable endpoint, Azure) the canary must not
appear in: ``repr``/``str``/HTML repr, ``get_params(deep=True)``, pickle, cloudpickle and
joblib files, DEBUG log records of every logger (``skembed``, ``openai``, the HTTP
transport), exception messages, attributes and formatted tracebacks (with their
chained exceptions and local variables), cache files, or progress bars. Cache files
and directories are private to the user whatever the umask. See docs/reliability.rst.
"""

import base64
import logging
import os
import pickle
import secrets
import stat
import traceback
from pathlib import Path

import cloudpickle
import joblib
import numpy as np
import pytest

from skembed import OpenAIEmbeddingTransformer, ZeroShotEmbeddingClassifier
from skembed._cache import EmbeddingCache
from skembed.backends import EmbeddingAPIError, EmbeddingError
from tests.redis_server import running_redis_server

MODEL = "text-embedding-3-small"
_PREFIX = "sk-canary-"
CANARY = _PREFIX + secrets.token_hex(16)
# The random part alone: the API echoes a wrong key masked to its first 5 and last 4
# characters, which is allowed; any longer piece of the secret is a leak.
SECRET = CANARY[len(_PREFIX) :]
_NEEDLES = [CANARY, SECRET, SECRET[:-4], SECRET[4:]]
_ENCODINGS = ("utf-8", "utf-16-le", "utf-32-le")


def assert_no_canary(data, where):
    """Fail if any piece of the canary is in ``data`` (text or bytes, any encoding)."""
    if isinstance(data, str):
        for needle in _NEEDLES:
            assert needle not in data, f"API key found in {where}"
        data = data.encode("utf-8", "surrogatepass")
    for needle in _NEEDLES:
        for encoding in _ENCODINGS:
            assert needle.encode(encoding) not in data, f"API key found in {where} ({encoding})"
        assert base64.b64encode(needle.encode()) not in data, f"API key (base64) in {where}"
    assert b"Bearer" not in data or b"Bearer YOUR_KEY" in data, f"auth header in {where}"


def scan_estimator(estimator, tmp_path, label):
    """Every serialisation of an estimator."""
    assert_no_canary(repr(estimator), f"{label} repr")
    assert_no_canary(str(estimator), f"{label} str")
    assert_no_canary(estimator._repr_html_(), f"{label} HTML repr")
    assert_no_canary(repr(estimator.get_params(deep=True)), f"{label} get_params")
    assert_no_canary(repr(vars(estimator)), f"{label} __dict__")
    assert_no_canary(pickle.dumps(estimator), f"{label} pickle")
    assert_no_canary(cloudpickle.dumps(estimator), f"{label} cloudpickle")
    for compress in (0, 3):
        path = tmp_path / f"{label}-{compress}.joblib"
        joblib.dump(estimator, path, compress=compress)
        if compress == 0:
            assert_no_canary(path.read_bytes(), f"{label} joblib file")
        assert_no_canary(pickle.dumps(joblib.load(path)), f"{label} joblib round trip")


def _chain(error):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def scan_exception(error, with_locals=True):
    """The message, attributes, pickle and formatted traceback of each chained error."""
    assert_no_canary("".join(traceback.format_exception(error)), "traceback")
    if with_locals:
        formatted = traceback.TracebackException.from_exception(error, capture_locals=True)
        assert_no_canary("".join(formatted.format()), "traceback with local variables")
    for link in _chain(error):
        # An error that is its own cause makes tblib's pickling (installed by distributed)
        # recurse forever.
        assert link.__cause__ is not link
        assert_no_canary(str(link), "exception message")
        assert_no_canary(repr(link.args), "exception args")
        assert_no_canary(repr(vars(link)), "exception attributes")
        try:
            pickled = pickle.dumps(link)
        except (RecursionError, TypeError, AttributeError, pickle.PicklingError):
            # An SDK error holding live HTTP objects may not pickle at all (which pickle
            # fails depends on the connection's state): nothing can leak through it then.
            # skembed's own errors must pickle (loky and Dask workers send them back).
            assert not isinstance(link, EmbeddingError), f"{type(link).__name__} must pickle"
        else:
            assert_no_canary(pickled, "pickled exception")
        # An SDK error carrying the HTTP request would carry its Authorization header.
        for owner in (link, getattr(link, "response", None)):
            request = getattr(owner, "request", None)
            if request is not None:
                assert_no_canary(repr(dict(request.headers)), "a chained request's headers")


class _AllRecords(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record):
        self.records.append((self.format(record), repr(record.__dict__)))


_LOGGERS = ("", "skembed", "openai", "httpx", "httpcore", "httpx2", "httpcore2", "urllib3")


@pytest.fixture
def all_logs():
    """Every record of every logger at DEBUG, formatted and raw (args included)."""
    handler = _AllRecords()
    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def scan_logs(handler):
    assert handler.records, "nothing was logged: the capture is broken"
    for formatted, raw in handler.records:
        assert_no_canary(formatted, "a log message")
        assert_no_canary(raw, "a log record's fields")


@pytest.fixture
def canary_server(fake_server, monkeypatch):
    """The fake server accepting only the canary, which is in both key variables."""
    fake_server.configure(api_key=CANARY)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", CANARY)
    return fake_server


@pytest.fixture
def openai_embedder_params():
    return {"max_retries": 1, "dimensions": 16}


def scan_cache(directory):
    files = [p for p in Path(directory).rglob("*") if p.is_file()]
    assert any(p.name.startswith("vectors-") for p in files)
    for path in files:
        assert_no_canary(str(path), "a cache file name")
        assert_no_canary(path.read_bytes(), f"cache file {path.name}")


# -- a successful job ---------------------------------------------------------------------


def test_successful_job_leaves_no_key_anywhere(
    canary_server, openai_embedder, all_logs, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("TQDM_DISABLE")  # the progress bar is under test
    cache_dir = tmp_path / "cache"
    embedder = openai_embedder(cache=str(cache_dir), verbose=True)
    texts = [f"private note {i}" for i in range(40)]
    X = embedder.fit_transform(texts)
    assert X.shape == (40, 16)
    assert embedder.__dict__.get("_backend_cache") is not None  # a live client is held
    bar = capsys.readouterr().err
    assert "Embedding" in bar  # the bar was drawn, and captured
    assert_no_canary(bar, "the progress bar")
    scan_logs(all_logs)
    scan_estimator(embedder, tmp_path, "transformer")
    scan_cache(cache_dir)
    # A restored copy has no client and no key, and still embeds (from the environment).
    restored = pickle.loads(pickle.dumps(embedder))
    np.testing.assert_allclose(restored.transform(texts[:3]), X[:3])


def test_zero_shot_wrapping_the_openai_embedder(canary_server, openai_embedder, all_logs, tmp_path):
    model = ZeroShotEmbeddingClassifier(
        labels={"sport": "a text about sport", "money": "a text about money"},
        embedder=openai_embedder(),
    )
    scan_estimator(model, tmp_path, "unfitted zero-shot")
    model.fit(["a goal", "a bond", "a match"])
    assert model.predict(["a goal"]).shape == (1,)
    assert model.embedder_.__dict__.get("_backend_cache") is not None
    scan_estimator(model, tmp_path, "fitted zero-shot")
    scan_logs(all_logs)
    restored = cloudpickle.loads(cloudpickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(["a goal"]), model.predict_proba(["a goal"]))


def test_azure_configuration(canary_server, all_logs, tmp_path):
    embedder = OpenAIEmbeddingTransformer(
        model=MODEL, base_url=canary_server.url, api_version="2024-02-01", cache=None
    )
    assert embedder.transform(["azure text"]).shape == (1, 1536)
    scan_estimator(embedder, tmp_path, "azure transformer")
    scan_logs(all_logs)


# -- failures -----------------------------------------------------------------------------


def _failing_calls(server, openai_embedder, monkeypatch):
    """(name, call, expected message) for each kind of failure."""
    server.configure(extra_models={"tiny-ctx": {"native_dim": 16, "max_input_tokens": 8}})

    def wrong_key():
        monkeypatch.setenv("OPENAI_API_KEY", CANARY)
        server.configure(api_key="sk-the-right-key-0000")
        return openai_embedder().transform(["x"])

    def azure_wrong_key():
        server.configure(api_key="sk-the-right-key-0000")
        return OpenAIEmbeddingTransformer(
            base_url=server.url, api_version="2024-02-01", cache=None, max_retries=0
        ).transform(["x"])

    def server_errors():
        server.configure(faults=[{"kind": "500"}, {"kind": "503"}, {"kind": "500"}])
        return openai_embedder().transform(["x"])

    def bad_request():
        return openai_embedder(model="tiny-ctx").transform(["ok", "far too long " * 10])

    def timeouts():
        server.configure(faults=[{"kind": "timeout", "seconds": 1.0}] * 3)
        return openai_embedder(timeout=0.2).transform(["x"])

    def dropped():
        server.configure(faults=[{"kind": "drop"}] * 3)
        return openai_embedder().transform(["x"])

    def unreachable():
        return OpenAIEmbeddingTransformer(
            base_url="http://127.0.0.1:9/v1", cache=None, max_retries=0
        ).transform(["x"])

    def credentials_in_base_url():
        # A password inside base_url: never in the cache key, the logs or an error.
        url = server.base_url.replace("http://", f"http://user:{CANARY}@")
        return OpenAIEmbeddingTransformer(
            base_url=url, cache=None, max_retries=0, model="tiny-ctx", dimensions=16
        ).transform(["far too long " * 10])

    def key_passed_as_variable_name():
        return openai_embedder(api_key_env=CANARY).transform(["x"])

    return [
        ("401", wrong_key, "refused the API key"),
        ("azure-401", azure_wrong_key, "refused the API key"),
        ("500-after-retries", server_errors, "gave up after 1 retries"),
        ("400", bad_request, "HTTP 400"),
        ("timeout", timeouts, "gave up after 1 retries"),
        ("dropped-connection", dropped, "gave up after 1 retries"),
        ("unreachable-base-url", unreachable, "no answer"),
        # The HTTP client would turn a URL's user:password into Basic auth instead of the
        # key: refused before anything is sent.
        ("credentials-in-base-url", credentials_in_base_url, "base_url contains credentials"),
        ("key-as-variable-name", key_passed_as_variable_name, "api_key_env must"),
    ]


FAILURES = [
    "401",
    "azure-401",
    "500-after-retries",
    "400",
    "timeout",
    "dropped-connection",
    "unreachable-base-url",
    "credentials-in-base-url",
    "key-as-variable-name",
]


@pytest.mark.parametrize("failure", FAILURES)
def test_errors_logs_and_tracebacks_hold_no_key(
    canary_server, openai_embedder, all_logs, monkeypatch, tmp_path, failure
):
    _, call, message = next(
        c for c in _failing_calls(canary_server, openai_embedder, monkeypatch) if c[0] == failure
    )
    refused = ValueError if failure == "credentials-in-base-url" else EmbeddingError
    with pytest.raises(refused, match=message) as info:
        call()
    # A secret given as a parameter value (api_key_env, base_url) is in the estimator's
    # repr by the caller's doing, so in the locals of its frames; it must still be in no
    # message, log record or exception attribute.
    user_put_it_in_a_parameter = failure in ("key-as-variable-name", "credentials-in-base-url")
    scan_exception(info.value, with_locals=not user_put_it_in_a_parameter)
    if not user_put_it_in_a_parameter:
        report = info.getrepr(showlocals=True, style="long")
        assert_no_canary(str(report), "pytest's report with locals")
    if refused is ValueError:  # refused before anything was sent (or logged)
        assert canary_server.stats()["requests"] == 0
    if all_logs.records or refused is not ValueError:
        scan_logs(all_logs)


def test_a_failed_job_leaves_no_key_in_the_estimator_or_its_cache(
    canary_server, openai_embedder, all_logs, tmp_path
):
    # "kept" and its one retry fail; the job then stops before sending "lost".
    canary_server.configure(faults=[{"kind": "500"}] * 2)
    cache_dir = tmp_path / "cache"
    embedder = openai_embedder(cache=str(cache_dir), batch_size=1, max_concurrency=1)
    with pytest.raises(EmbeddingAPIError):
        embedder.transform(["kept", "lost"])
    embedder.transform(["kept", "other"])  # fills the cache
    scan_estimator(embedder, tmp_path, "transformer after a failure")
    scan_cache(cache_dir)
    scan_logs(all_logs)


# -- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_cache_files_are_private_whatever_the_umask(
    canary_server, openai_embedder, tmp_path, umask
):
    previous = os.umask(umask)
    try:
        directory = tmp_path / "cache"
        # A small size bound makes the cache evict, which rewrites vector files.
        cache = EmbeddingCache(directory, max_size_bytes=120_000)
        embedder = openai_embedder(cache=cache, dimensions=256)
        for start in range(0, 240, 60):
            embedder.transform([f"text {i}" for i in range(start, start + 60)])
        with cache.lock("a namespace"):
            pass
        cache.close()
    finally:
        os.umask(previous)
    paths = [directory, *directory.rglob("*")]
    assert len([p for p in paths if p.name.startswith("vectors-")]) >= 1
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


# -- a Redis cache with a password ---------------------------------------------------------

REDIS_CANARY = "redis-canary-" + secrets.token_hex(16)
WRONG_REDIS_CANARY = "redis-wrong-" + secrets.token_hex(16)


def assert_no_redis_password(data, where):
    for password in (REDIS_CANARY, WRONG_REDIS_CANARY):
        text = data if isinstance(data, str) else data.decode("latin-1")
        assert password not in text, f"Redis password found in {where}"
        assert password[-32:] not in text, f"Redis password found in {where}"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A password-protected redis-server on 127.0.0.1; its URL without the password."""
    with running_redis_server(tmp_path_factory.mktemp("redis"), REDIS_CANARY) as server:
        yield server.url()


def _raised(call):
    try:
        call()
    except Exception as error:
        return error
    raise AssertionError("no error was raised")


def _scan_redis_everywhere(objects, error, handler, tmp_path):
    for label, obj in objects.items():
        assert_no_redis_password(repr(obj), f"{label} repr")
        assert_no_redis_password(pickle.dumps(obj), f"{label} pickle")
        assert_no_redis_password(cloudpickle.dumps(obj), f"{label} cloudpickle")
        path = tmp_path / f"{label}.joblib"
        joblib.dump(obj, path)
        assert_no_redis_password(path.read_bytes(), f"{label} joblib file")
        if hasattr(obj, "get_params"):
            assert_no_redis_password(repr(obj.get_params(deep=True)), f"{label} get_params")
    if error is not None:
        formatted = traceback.TracebackException.from_exception(error, capture_locals=True)
        assert_no_redis_password("".join(formatted.format()), "traceback with locals")
        for link in _chain(error):
            assert_no_redis_password(repr(vars(link)) + repr(link.args), "exception")
            assert_no_redis_password(pickle.dumps(link), "pickled exception")
    for formatted_record, raw in handler.records:
        assert_no_redis_password(formatted_record + raw, "a log record")


def test_redis_password_in_the_environment(
    canary_server, openai_embedder, redis_url, all_logs, monkeypatch, tmp_path
):
    from skembed._cache import CacheError

    monkeypatch.setenv("SKEMBED_REDIS_PASSWORD", REDIS_CANARY)
    embedder = openai_embedder(cache=redis_url)
    X = embedder.fit_transform(["shared text", "another"])
    embedder.transform(["shared text"])  # a cache hit
    assert canary_server.stats()["text_counts"] == {"shared text": 1, "another": 1}
    _scan_redis_everywhere({"transformer": embedder}, None, all_logs, tmp_path)
    scan_estimator(embedder, tmp_path, "transformer with a Redis cache")
    # A wrong password: a clear error naming the server, never either password.
    monkeypatch.setenv("SKEMBED_REDIS_PASSWORD", WRONG_REDIS_CANARY)
    with pytest.raises(CacheError, match="refused the credentials") as info:
        openai_embedder(cache=redis_url.replace("/0", "/1")).transform(["new text"])
    _scan_redis_everywhere({"transformer": embedder}, info.value, all_logs, tmp_path)
    assert X.shape == (2, 16)


def test_redis_password_in_a_cache_object_url(redis_url, all_logs, monkeypatch, tmp_path):
    from skembed._cache import CacheError, RedisEmbeddingCache, cache_key, resolve_cache

    monkeypatch.delenv("SKEMBED_REDIS_PASSWORD", raising=False)
    with_password = redis_url.replace("redis://", f"redis://:{REDIS_CANARY}@")
    cache = RedisEmbeddingCache(with_password, prefix="secrets-test")
    keys = [cache_key("ns", "a text")]
    cache.put(keys, np.ones((1, 4), dtype=np.float32))
    assert cache.get(keys, 4)[0].all()
    _scan_redis_everywhere({"cache": cache, "stats": cache.stats()}, None, all_logs, tmp_path)
    wrong = RedisEmbeddingCache(redis_url.replace("redis://", f"redis://:{WRONG_REDIS_CANARY}@"))
    error = _raised(lambda: wrong.get(keys, 4))  # a traceback without this test's frame
    assert isinstance(error, CacheError) and "refused the credentials" in str(error)
    _scan_redis_everywhere({"wrong cache": wrong}, error, all_logs, tmp_path)
    # As an estimator parameter a URL is stored as given: a password there is refused.
    with pytest.raises(ValueError, match="must not contain a password") as info:
        resolve_cache(with_password)
    assert_no_redis_password(str(info.value), "the refusal")
    cache.clear()
