"""Test-session environment for every test and doctest: offline, quiet, isolated cache."""

import os

import pytest

# Nothing listens on port 9 (discard): a client that forgets base_url fails at once
# instead of reaching a real host.
_UNREACHABLE_BASE_URL = "http://127.0.0.1:9/v1"
_REAL_KEYS = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY")
_NO_PROXY = ("NO_PROXY", "no_proxy")  # urllib prefers the lowercase one


@pytest.fixture(scope="session", autouse=True)
def _offline_environment(tmp_path_factory):
    names = (*_REAL_KEYS, *_NO_PROXY, "OPENAI_BASE_URL", "SKEMBED_CACHE_DIR", "TQDM_DISABLE")
    saved = {name: os.environ.get(name) for name in names}
    for name in _REAL_KEYS:
        os.environ.pop(name, None)
    os.environ["OPENAI_BASE_URL"] = _UNREACHABLE_BASE_URL
    os.environ["SKEMBED_CACHE_DIR"] = str(tmp_path_factory.mktemp("skembed_cache"))
    os.environ["TQDM_DISABLE"] = "1"
    # An HTTP proxy from the environment must never see the local fake server's traffic.
    for name in _NO_PROXY:
        os.environ[name] = ",".join(filter(None, [saved[name], "127.0.0.1,localhost"]))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
