"""The Files and Batch endpoints, for embeddings batches, with the real API's shapes.

What the SDK calls: ``POST /v1/files`` (multipart, ``purpose=batch``, JSONL), ``GET
/v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``, ``POST
/v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel`` and ``GET
/v1/batches``. Each input line is ``{"custom_id", "method": "POST", "url":
"/v1/embeddings", "body": {...}}``; each output line is ``{"id", "custom_id",
"response": {"status_code", "request_id", "body"}, "error"}``; lines that failed go to
the error file, those cut off by an expiry with ``error.code = "batch_expired"``.

The documented per-batch limits (OpenAI's batch reference, mirrored in the SDK's
``batches.create`` docstring): at most 50,000 requests and 200 MB per input file, and
for ``/v1/embeddings`` at most 50,000 embedding inputs across all requests of a batch.
They are configurable here (``POST /control/batches``) so that tests can reach them.

A batch moves with the clock: ``validating`` for the first 10% of its
``completion_seconds``, ``in_progress`` until 90%, ``finalizing`` until 100%, then its
outcome. Its lines are embedded once, when it reaches its outcome (on the first call
that looks at it, or on ``GET /stats``), with the vectors ``/v1/embeddings`` returns.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import json
import random
import threading
import time

from skembed._tokens import get_encoding

from . import _errors, _request
from ._auth import check_key, read_credentials
from ._batch_config import BATCH_DEFAULTS, BatchStats, check_config, merge_stats, n_malformed
from ._batch_lines import (
    ENDPOINT,
    error_list,
    expired_line,
    malformed,
    new_id,
    output_line,
    parse_input,
)
from ._config import model_table, served_model_key
from ._hostile import shape_rows
from ._render import render
from ._state import Reply
from ._vectors import embed_rows, input_bytes

__all__ = ["BatchStore", "merge_stats"]

_TERMINAL = ("completed", "failed", "expired", "cancelled")


def _not_found(kind, object_id):
    return _errors.ApiError(404, f"No such {kind} object: {object_id}", code="not_found")


def _parse_multipart(content_type, body):
    """``{field: (filename, bytes)}`` of a multipart/form-data body."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise _errors.ApiError(400, "Expected a multipart/form-data body.")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


class BatchStore:
    """Files, batches, their configuration and counters, for one server."""

    def __init__(self, state):
        self._state = state  # the online side: key, models, vector mode
        self._encoding = get_encoding("cl100k_base")
        self._lock = threading.Lock()
        self.reset()

    # -- control ---------------------------------------------------------------------

    def reset(self):
        with self._lock:
            self._config = copy.deepcopy(BATCH_DEFAULTS)
            self._plans = []
            self._files = {}
            self._batches = {}
            self._stats = BatchStats()
            self._rng = random.Random(0)

    def reset_stats(self):
        with self._lock:
            self._stats = BatchStats()

    def control(self, updates):
        if not isinstance(updates, dict) or set(updates) - set(BATCH_DEFAULTS):
            raise ValueError(f"Batch configuration keys must be among {sorted(BATCH_DEFAULTS)}.")
        with self._lock:
            merged = {**self._config, **copy.deepcopy(updates)}
            check_config(merged)
            self._config = merged
            if "plans" in updates:
                self._plans = list(merged["plans"])
            if "fail_seed" in updates:
                self._rng = random.Random(merged["fail_seed"])

    def stats(self):
        for batch in self._all_batches():
            self._advance(batch)
        with self._lock:
            return self._stats.as_dict()

    # -- routing ---------------------------------------------------------------------

    def handle(self, method, path, query, headers, body):
        """Answer a Files/Batch call, or ``None`` when ``path`` is not one."""
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "v1" or parts[1] not in ("files", "batches"):
            return None
        try:
            self._authenticate(headers)
            payload = self._route(method, parts[1], parts[2:], query, headers, body)
        except _errors.ApiError as error:
            return Reply(error.status, error.body(), dict(error.headers), str(error.status))
        if isinstance(payload, bytes):
            return Reply(200, payload, {"Content-Type": "application/octet-stream"}, "200")
        return Reply(200, json.dumps(payload).encode(), {}, "200")

    def _authenticate(self, headers):
        # The online side owns the key (and /control changes it).
        check_key(read_credentials(headers), self._state._config["api_key"])

    def _route(self, method, kind, rest, query, headers, body):
        if kind == "files":
            if method == "POST" and not rest:
                return self._upload(headers.get("Content-Type", ""), body)
            if method == "GET" and len(rest) == 1:
                return self._file(rest[0])["object"]
            if method == "GET" and len(rest) == 2 and rest[1] == "content":
                return self._file(rest[0])["content"]
            if method == "DELETE" and len(rest) == 1:
                with self._lock:
                    if self._files.pop(rest[0], None) is None:
                        raise _not_found("File", rest[0])
                return {"id": rest[0], "object": "file", "deleted": True}
        else:
            if method == "POST" and not rest:
                return self._create(body)
            if method == "GET" and len(rest) == 1:
                return self._view(self._batch(rest[0]))
            if method == "POST" and len(rest) == 2 and rest[1] == "cancel":
                return self._cancel(self._batch(rest[0]))
            if method == "GET" and not rest:
                return self._list(query)
        raise _errors.invalid_url(method, "/" + "/".join(["v1", kind, *rest]))

    # -- files -----------------------------------------------------------------------

    def _add_file(self, content, filename, purpose):
        file_id = new_id("file")
        record = {
            "object": {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
                "status_details": None,
            },
            "content": content,
        }
        with self._lock:
            self._files[file_id] = record
        return record["object"]

    def _upload(self, content_type, body):
        fields = _parse_multipart(content_type, body)
        purpose = fields.get("purpose", (None, b""))[1].decode()
        if "file" not in fields:
            raise _errors.ApiError(400, "Missing required parameter: 'file'.", param="file")
        if purpose != "batch":
            # The fake only serves batches; other purposes are the real API's business.
            raise _errors.ApiError(400, f"Invalid value for 'purpose': {purpose!r}.")
        filename, content = fields["file"]
        with self._lock:
            self._stats.files_uploaded += 1
        return self._add_file(content, filename or "upload.jsonl", purpose)

    def _file(self, file_id):
        with self._lock:
            record = self._files.get(file_id)
        if record is None:
            raise _not_found("File", file_id)
        return record

    # -- batches ---------------------------------------------------------------------

    def _create(self, body):
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise _errors.invalid_json() from None
        file_id = request.get("input_file_id")
        if not isinstance(file_id, str):
            raise _errors.ApiError(400, "Missing required parameter: 'input_file_id'.")
        if request.get("endpoint") != ENDPOINT:
            raise _errors.ApiError(
                400,
                f"Invalid value for 'endpoint': {request.get('endpoint')!r}; this fake server "
                f"serves only {ENDPOINT!r} batches.",
                param="endpoint",
            )
        if request.get("completion_window") != "24h":
            raise _errors.ApiError(
                400,
                f"Invalid value for 'completion_window': {request.get('completion_window')!r}."
                " Supported values are: '24h'.",
                param="completion_window",
            )
        record = self._file(file_id)
        if record["object"]["purpose"] != "batch":
            raise _errors.ApiError(400, f"File {file_id} was not uploaded with purpose 'batch'.")
        now = time.time()
        with self._lock:
            plan = self._plans.pop(0) if self._plans else {}
            config = self._config
            self._stats.batches_created += 1
            seed = self._rng.random()
        batch = {
            "id": new_id("batch"),
            "object": "batch",
            "endpoint": ENDPOINT,
            "errors": None,
            "input_file_id": file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(now),
            "in_progress_at": None,
            "expires_at": int(now) + 24 * 3600,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": request.get("metadata"),
        }
        internal = {
            "view": batch,
            "start": now,
            "seconds": plan.get("seconds", config["completion_seconds"]),
            "plan": plan,
            "config": config,
            "seed": seed,
            "lines": None,  # parsed at validation
            "lock": threading.Lock(),
        }
        with self._lock:
            self._batches[batch["id"]] = internal
        self._advance(internal)
        return self._view(internal)

    def _batch(self, batch_id):
        with self._lock:
            internal = self._batches.get(batch_id)
        if internal is None:
            raise _not_found("Batch", batch_id)
        return internal

    def _all_batches(self):
        with self._lock:
            return list(self._batches.values())

    def _view(self, internal):
        self._advance(internal)
        with internal["lock"]:
            return copy.deepcopy(internal["view"])

    def _list(self, query):
        limit = int(query.get("limit", ["20"])[-1])
        after = query.get("after", [None])[-1]
        batches = sorted(self._all_batches(), key=lambda b: -b["start"])
        ids = [b["view"]["id"] for b in batches]
        start = ids.index(after) + 1 if after in ids else 0
        page = [self._view(b) for b in batches[start : start + limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(batches),
        }

    def _cancel(self, internal):
        self._advance(internal)
        with internal["lock"]:
            view = internal["view"]
            if view["status"] in _TERMINAL:
                raise _errors.ApiError(
                    409, f"Cannot cancel a batch with status '{view['status']}'."
                )
            now = int(time.time())
            view["cancelling_at"] = view["cancelled_at"] = now
            view["status"] = "cancelled"
            lines = internal["lines"] or []
            errors = [expired_line(line, "batch_cancelled") for line in lines]
            view["request_counts"] = {"total": len(lines), "completed": 0, "failed": len(lines)}
            if errors:
                view["error_file_id"] = self._add_file(
                    b"".join(errors), f"{view['id']}_error.jsonl", "batch_output"
                )["id"]
        return copy.deepcopy(view)

    # -- the clock -------------------------------------------------------------------

    def _advance(self, internal):
        """Bring a batch's status up to date with the time elapsed since its creation."""
        with internal["lock"]:
            view = internal["view"]
            if view["status"] in _TERMINAL:
                return
            elapsed = time.time() - internal["start"]
            seconds = internal["seconds"]
            now = int(time.time())
            if elapsed >= 0.1 * seconds and internal["lines"] is None:
                failure = self._validate(internal)
                if failure is not None:
                    view.update(status="failed", failed_at=now, errors=failure)
                    return
                view.update(status="in_progress", in_progress_at=now)
                view["request_counts"]["total"] = len(internal["lines"])
                # The work happens while the batch is in progress, as on the real service,
                # so that a poll at completion time does not wait for it.
                internal["work"] = threading.Thread(
                    target=self._process, args=(internal,), daemon=True
                )
                internal["work"].start()
            if internal["lines"] is None:
                return
            if elapsed >= 0.9 * seconds and view["finalizing_at"] is None:
                view.update(status="finalizing", finalizing_at=now)
            if elapsed >= seconds:
                self._finish(internal, now)

    def _validate(self, internal):
        """Parse the input file; the ``errors`` object of a failed batch, or None."""
        content = self._file(internal["view"]["input_file_id"])["content"]
        if internal["plan"].get("outcome") == "failed":
            return error_list("validation_failed", "The batch failed validation (planned).")
        lines, errors = parse_input(content, internal["config"])
        if errors is None:
            errors = self._enqueue(internal, lines)
        if errors is None:
            internal["lines"] = lines
        return errors

    def _enqueue(self, internal, lines):
        """Count the batch's tokens against its model's enqueued limit; errors if over."""
        model, tokens = "", 0
        for line in lines:
            try:
                request = _request.parse(json.dumps(line["body"]).encode(), self._encoding)
            except _errors.ApiError:
                continue  # answered 400 on its own line, and not counted
            model, tokens = model or request.model, tokens + request.n_tokens
        limit = internal["config"]["max_enqueued_tokens"]
        with self._lock:
            enqueued = sum(
                other.get("enqueued", 0)
                for other in self._batches.values()
                if other is not internal
                and other.get("model") == model
                and other["view"]["status"] not in _TERMINAL
            )
            if limit is not None and enqueued + tokens > limit:
                self._stats.token_limit_failures += 1
                return error_list(
                    "token_limit_exceeded",
                    f"Enqueued token limit reached for {model} in organization org-fake. "
                    f"Limit: {limit:,} enqueued tokens. Please try again once some "
                    "in_progress batches have been completed.",
                )
            internal["model"], internal["enqueued"] = model, tokens
            self._stats.peak_enqueued_tokens = max(
                self._stats.peak_enqueued_tokens, enqueued + tokens
            )
        return None

    def _process(self, internal):
        """Answer every line: ``internal["results"] = (outputs, errors, requests, n_bad)``."""
        plan, config, lines = internal["plan"], internal["config"], internal["lines"]
        online = self._state._config  # vector mode and extra models, as /v1/embeddings sees
        models = model_table(online)
        rng = random.Random(internal["seed"])
        n_failing = round(plan.get("fail_fraction", 0.0) * len(lines))
        failing = set(rng.sample(range(len(lines)), n_failing))
        expired = plan.get("outcome") == "expired"
        n_done = round(plan.get("complete_fraction", 0.5) * len(lines)) if expired else len(lines)
        fail_texts = set(config["fail_texts"])
        outputs, errors, embedded = [], [], []
        for position, line in enumerate(lines):
            if position >= n_done:
                errors.append(expired_line(line, "batch_expired"))
                continue
            result = self._answer(line, position in failing, fail_texts, models, online)
            if result[0] == 200:
                outputs.append(result[1])
                embedded.append(result[2])
            else:
                errors.append(result[1])
        # Chosen from the batch's seed, like the failing lines, so a run is reproducible.
        n_bad = n_malformed(plan, config, len(outputs))
        for position in random.Random(f"malformed {internal['seed']}").sample(
            range(len(outputs)), n_bad
        ):
            outputs[position] = malformed(outputs[position])
        internal["results"] = (outputs, errors, embedded, n_bad)

    def _finish(self, internal, now):
        """Publish the answers: counters, output and error files, the final status."""
        internal["work"].join()
        outputs, errors, embedded, n_bad = internal["results"]
        view, lines = internal["view"], internal["lines"]
        with self._lock:
            stats = self._stats
            stats.malformed_lines += n_bad
            for request in embedded:
                stats.lines += 1
                stats.inputs += len(request.items)
                stats.tokens += request.n_tokens
                stats.text_counts.update(
                    i if isinstance(i, str) else self._encoding.decode(i) for i in request.items
                )
        if outputs:
            view["output_file_id"] = self._add_file(
                b"".join(outputs), f"{view['id']}_output.jsonl", "batch_output"
            )["id"]
        if errors:
            view["error_file_id"] = self._add_file(
                b"".join(errors), f"{view['id']}_error.jsonl", "batch_output"
            )["id"]
        view["request_counts"] = {
            "total": len(lines),
            "completed": len(outputs),
            "failed": len(errors),
        }
        if internal["plan"].get("outcome") == "expired":
            view.update(status="expired", expired_at=now)
        else:
            view.update(status="completed", completed_at=now)

    def _answer(self, line, planned_failure, fail_texts, models, online):
        """One line's ``(status, output line bytes, parsed request or None)``."""
        try:
            request = _request.parse(json.dumps(line["body"]).encode(), self._encoding)
            spec = _request.validate(request, models)
            if planned_failure:
                raise _errors.ApiError(500, _errors.SERVER_ERROR, type="server_error")
            if fail_texts.intersection(i for i in request.items if isinstance(i, str)):
                raise _errors.ApiError(400, _errors.INVALID_INPUT)
        except _errors.ApiError as error:
            body = error.body()
            return error.status, output_line(line["custom_id"], error.status, body), None
        datas = [input_bytes(item) for item in request.items]
        vectors = embed_rows(
            served_model_key(online, request.model),
            datas,
            spec.native_dim,
            request.dimensions,
            online["vector_mode"],
        )
        # The row knobs (magnitudes, zero and non-finite rows) apply here too.
        body = render(request, shape_rows(vectors, datas, online))
        return 200, output_line(line["custom_id"], 200, body), request
