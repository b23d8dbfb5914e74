"""An OpenAI-compatible embeddings server for offline tests, and its controller.

:class:`FakeOpenAIServer` runs ``python -m tests.fake_openai`` in a subprocess (so that
the server's threads never compete with the client under test for the GIL) and talks
to its control endpoints with urllib. :func:`expected_vector` predicts every vector
the server returns; under the hostile knobs, :func:`row_fate`, :func:`expected_wire_row`
and :func:`wire_items` predict what happens to each row and index. See
docs/testing_offline.rst.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from ._config import DEFAULT_API_KEY, DEFAULT_CONFIG, merge_config
from ._hostile import RowFate, expected_wire_row, row_fate, wire_items
from ._vectors import expected_vector

__all__ = [
    "DEFAULT_API_KEY",
    "FakeOpenAIServer",
    "RowFate",
    "expected_vector",
    "expected_wire_row",
    "row_fate",
    "wire_items",
]

_REPO_ROOT = Path(__file__).resolve().parents[2]
# Never send control calls through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeOpenAIServer:
    """Start, configure, inspect and stop a fake OpenAI server process.

    Parameters
    ----------
    api_key : str, default=DEFAULT_API_KEY
        The key clients must send.
    start_timeout : float, default=30
        Seconds to wait for the server to report its port.
    **config
        Initial configuration (``rpm``, ``tpm``, ``latency``, ``faults``...), also what
        :meth:`reset` returns to. Checked here, before any process starts.

    Examples
    --------
    >>> import openai
    >>> with FakeOpenAIServer(tpm=10_000) as server:
    ...     client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)
    ...     response = client.embeddings.create(model="text-embedding-3-small", input=["hi"])
    ...     server.stats()["tokens"]
    1
    """

    def __init__(self, api_key=DEFAULT_API_KEY, *, start_timeout=30.0, **config):
        merge_config(DEFAULT_CONFIG, {**config, "api_key": api_key})
        self._config = config
        self._startup_key = api_key
        self._api_key = api_key
        self._start_timeout = start_timeout
        self._process = None
        self._stderr = None
        self._port = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self):
        """Launch the server process and wait until it listens; return ``self``."""
        if self._process is not None:
            return self
        env = dict(os.environ)
        # Make the repository importable even when the cwd is not on sys.path
        # (PYTHONSAFEPATH, an installed skembed elsewhere...).
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH")) if p
        )
        # Kept open while the process runs, to explain a failed start.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        command = [sys.executable, "-m", "tests.fake_openai", "--port", "0"]
        command += ["--api-key", self._startup_key, "--config", json.dumps(self._config)]
        self._process = subprocess.Popen(
            command, cwd=_REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=self._stderr
        )
        lines = queue.Queue()
        reader = threading.Thread(
            target=lambda: lines.put(self._process.stdout.readline()), daemon=True
        )
        reader.start()
        try:
            line = lines.get(timeout=self._start_timeout).decode()
        except queue.Empty:
            line = None
        if line is None or not line.startswith("LISTENING "):
            self._process.kill()
            code = self._process.wait()
            reader.join(timeout=5)  # it returns at EOF; then its pipe can be closed
            self._stderr.seek(0)
            stderr = self._stderr.read().decode(errors="replace").strip()
            self.stop()
            what = (
                f"did not report its port within {self._start_timeout} s"
                if line is None
                else f"exited (code {code}) instead of printing 'LISTENING <port>'"
            )
            raise RuntimeError(
                f"The fake OpenAI server {what}." + (f" Its stderr:\n{stderr}" if stderr else "")
            )
        self._port = int(line.split()[1])
        return self

    def stop(self):
        """Terminate the server process (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process, self._port = self._process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()
        self._stderr.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- addresses -------------------------------------------------------------------

    @property
    def url(self):
        """``http://127.0.0.1:<port>`` (the Azure ``azure_endpoint``)."""
        if self._port is None:
            raise RuntimeError("The fake OpenAI server is not running; call start().")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self):
        """``http://127.0.0.1:<port>/v1``, the ``base_url`` for ``openai.OpenAI``."""
        return f"{self.url}/v1"

    @property
    def api_key(self):
        """The key the server currently accepts."""
        return self._api_key

    # -- control ---------------------------------------------------------------------

    def _call(self, method, path, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            message = json.loads(error.read())["error"]["message"]
            raise ValueError(f"The fake OpenAI server refused {path}: {message}") from None

    def configure(self, **config):
        """Merge ``config`` into the server's configuration (see /control)."""
        self._call("POST", "/control", config)
        self._api_key = config.get("api_key", self._api_key)

    def configure_batches(self, **config):
        """Merge ``config`` into the Batch API's configuration (see /control/batches).

        Keys: ``completion_seconds``, ``plans`` (outcomes of the next batches),
        ``fail_texts``, ``fail_seed``, ``max_requests_per_batch``,
        ``max_inputs_per_batch``, ``max_file_bytes``, ``malformed_output_lines``,
        ``malformed_output_fraction``; :meth:`reset` restores the defaults and forgets
        every file and batch.
        """
        self._call("POST", "/control/batches", config)

    def reset(self):
        """Restore the configuration given at construction and clear the stats."""
        self._call("POST", "/reset", {})
        self._api_key = self._startup_key

    def reset_stats(self):
        """Clear the counters, keeping the configuration."""
        self._call("POST", "/reset_stats", {})

    def stats(self, texts=True):
        """Counters of what the server received and answered (see GET /stats)."""
        return self._call("GET", "/stats" if texts else "/stats?texts=0")

    def settled_stats(self, texts=True, timeout=10.0):
        """:meth:`stats` once every request received has been answered (and charged).

        A client may have its answer (or have given up) before the server has counted
        the request: one still being answered (a ``timeout`` fault keeps its thread
        asleep after the client gave up) is counted by status only when it ends.
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats(texts)
            if sum(stats["requests_by_status"].values()) == stats["requests"]:
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"requests still unanswered after {timeout} s: {stats}")
            time.sleep(0.05)
