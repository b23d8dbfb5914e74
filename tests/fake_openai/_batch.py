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
import uuid
from collections import Counter

from skembed._tokens import get_encoding

from . import _errors, _request
from ._config import model_table
from ._state import Reply, _presented_key, _render
from ._vectors import embed_rows, input_bytes

__all__ = ["BatchStore", "merge_stats"]

_ENDPOINT = "/v1/embeddings"
_TERMINAL = ("completed", "failed", "expired", "cancelled")
_OUTCOMES = ("completed", "expired", "failed")
_PLAN_FIELDS = {"outcome", "fail_fraction", "complete_fraction", "seconds"}

BATCH_DEFAULTS = {
    "completion_seconds": 0.2,
    # Applied in turn to the next batches created: {"outcome": "completed" | "expired" |
    # "failed", "fail_fraction": share of lines answered 500, "complete_fraction": share
    # of lines done before an expiry, "seconds": this batch's completion time}.
    "plans": [],
    # A line with any of these texts among its inputs fails (400) in every batch.
    "fail_texts": [],
    "fail_seed": 0,
    "max_requests_per_batch": 50_000,
    "max_inputs_per_batch": 50_000,
    "max_file_bytes": 200_000_000,
}


def _check_config(config):
    seconds = config["completion_seconds"]
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise ValueError(f"'completion_seconds' must be a number >= 0, got {seconds!r}.")
    for name in ("max_requests_per_batch", "max_inputs_per_batch", "max_file_bytes"):
        value = config[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name!r} must be a positive integer, got {value!r}.")
    if not isinstance(config["fail_seed"], int):
        raise ValueError(f"'fail_seed' must be an integer, got {config['fail_seed']!r}.")
    if not isinstance(config["fail_texts"], list) or not all(
        isinstance(t, str) for t in config["fail_texts"]
    ):
        raise ValueError("'fail_texts' must be a list of strings.")
    if not isinstance(config["plans"], list):
        raise ValueError(f"'plans' must be a list, got {config['plans']!r}.")
    for position, plan in enumerate(config["plans"]):
        if not isinstance(plan, dict) or set(plan) - _PLAN_FIELDS:
            raise ValueError(f"plans[{position}] must be an object with fields {_PLAN_FIELDS}.")
        if plan.get("outcome", "completed") not in _OUTCOMES:
            raise ValueError(f"plans[{position}].outcome must be one of {_OUTCOMES}.")
        for field in ("fail_fraction", "complete_fraction"):
            if not 0 <= plan.get(field, 0) <= 1:
                raise ValueError(f"plans[{position}].{field} must be in [0, 1].")


def merge_stats(online, batch, texts=True):
    """``/stats``: the online counters (with ``text_counts``) plus the batch ones.

    A text embedded online and in a batch counts in both, so ``times_embedded_max``
    still tells whether anything was paid for twice.
    """
    merged = {**online, **{k: v for k, v in batch.items() if k != "text_counts"}}
    counts = Counter(online["text_counts"])
    counts.update(batch["text_counts"])
    merged["times_embedded_max"] = max(counts.values(), default=0)
    if texts:
        merged["text_counts"] = dict(counts)
    else:
        merged.pop("text_counts")
    return merged


class _BatchStats:
    def __init__(self):
        self.files_uploaded = 0
        self.batches_created = 0
        self.lines = 0
        self.inputs = 0
        self.tokens = 0
        self.text_counts = Counter()

    def as_dict(self):
        return {
            "batch_files_uploaded": self.files_uploaded,
            "batches_created": self.batches_created,
            "batch_lines": self.lines,
            "batch_inputs": self.inputs,
            "batch_tokens": self.tokens,
            "text_counts": dict(self.text_counts),
        }


def _new_id(prefix):
    return (
        f"{prefix}-{uuid.uuid4().hex[:24]}" if prefix == "file" else f"{prefix}_{uuid.uuid4().hex}"
    )


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
            self._stats = _BatchStats()
            self._rng = random.Random(0)

    def reset_stats(self):
        with self._lock:
            self._stats = _BatchStats()

    def control(self, updates):
        if not isinstance(updates, dict) or set(updates) - set(BATCH_DEFAULTS):
            raise ValueError(f"Batch configuration keys must be among {sorted(BATCH_DEFAULTS)}.")
        with self._lock:
            merged = {**self._config, **copy.deepcopy(updates)}
            _check_config(merged)
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
        key = _presented_key(headers, azure=False)
        if not key:
            raise _errors.missing_key()
        # The online side owns the key (and /control changes it).
        if key != self._state._config["api_key"]:
            raise _errors.wrong_key(key)

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
        file_id = _new_id("file")
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
        if request.get("endpoint") != _ENDPOINT:
            raise _errors.ApiError(
                400,
                f"Invalid value for 'endpoint': {request.get('endpoint')!r}; this fake server "
                f"serves only {_ENDPOINT!r} batches.",
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
            "id": _new_id("batch"),
            "object": "batch",
            "endpoint": _ENDPOINT,
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
            errors = [_expired_line(line, "batch_cancelled") for line in lines]
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
        config = internal["config"]
        content = self._file(internal["view"]["input_file_id"])["content"]
        if internal["plan"].get("outcome") == "failed":
            return _error_list("validation_failed", "The batch failed validation (planned).")
        if len(content) > config["max_file_bytes"]:
            return _error_list(
                "file_too_large",
                f"The input file is {len(content)} bytes; the limit is "
                f"{config['max_file_bytes']} bytes.",
            )
        lines, seen, n_inputs = [], set(), 0
        for number, raw in enumerate(content.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                return _error_list("invalid_json_line", "This line is not valid JSON.", number)
            if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
                return _error_list("missing_required_parameter", "Missing 'custom_id'.", number)
            if line["custom_id"] in seen:
                return _error_list(
                    "duplicate_custom_id",
                    f"The custom_id for this request is a duplicate of another request: "
                    f"{line['custom_id']}.",
                    number,
                )
            if line.get("method") != "POST" or line.get("url") != _ENDPOINT:
                return _error_list(
                    "invalid_request",
                    f"Each request must be a POST to {_ENDPOINT}, the batch's endpoint.",
                    number,
                )
            seen.add(line["custom_id"])
            body = line.get("body")
            inputs = body.get("input") if isinstance(body, dict) else None
            n_inputs += len(inputs) if isinstance(inputs, list) else 1
            lines.append(line)
        if not lines:
            return _error_list("empty_file", "The input file has no requests.")
        if len(lines) > config["max_requests_per_batch"]:
            return _error_list(
                "too_many_requests",
                f"The input file has {len(lines)} requests; a batch may have at most "
                f"{config['max_requests_per_batch']}.",
            )
        if n_inputs > config["max_inputs_per_batch"]:
            return _error_list(
                "too_many_inputs",
                f"The batch has {n_inputs} embedding inputs; /v1/embeddings batches may have "
                f"at most {config['max_inputs_per_batch']} across all requests.",
            )
        internal["lines"] = lines
        return None

    def _process(self, internal):
        """Answer every line: ``internal["results"] = (outputs, errors, requests)``."""
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
                errors.append(_expired_line(line, "batch_expired"))
                continue
            result = self._answer(line, position in failing, fail_texts, models, online)
            if result[0] == 200:
                outputs.append(result[1])
                embedded.append(result[2])
            else:
                errors.append(result[1])
        internal["results"] = (outputs, errors, embedded)

    def _finish(self, internal, now):
        """Publish the answers: counters, output and error files, the final status."""
        internal["work"].join()
        outputs, errors, embedded = internal["results"]
        view, lines = internal["view"], internal["lines"]
        with self._lock:
            stats = self._stats
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
            return error.status, _output_line(line["custom_id"], error.status, body), None
        vectors = embed_rows(
            request.model,
            [input_bytes(item) for item in request.items],
            spec.native_dim,
            request.dimensions,
            online["vector_mode"],
        )
        body = _render(request, vectors, None)
        return 200, _output_line(line["custom_id"], 200, body), request


def _output_line(custom_id, status, body):
    head = {"id": _new_id("batch_req"), "custom_id": custom_id}
    request_id = json.dumps(_new_id("req"))
    return (
        json.dumps(head)[:-1].encode()
        + b',"response":{"status_code":%d,"request_id":%s,"body":' % (status, request_id.encode())
        + body
        + b'},"error":null}\n'
    )


def _expired_line(line, code):
    messages = {
        "batch_expired": "This request could not be executed before the completion window expired.",
        "batch_cancelled": "This request could not be executed before the batch was cancelled.",
    }
    record = {
        "id": _new_id("batch_req"),
        "custom_id": line["custom_id"],
        "response": None,
        "error": {"code": code, "message": messages[code]},
    }
    return json.dumps(record).encode() + b"\n"


def _error_list(code, message, line=None):
    return {
        "object": "list",
        "data": [{"code": code, "message": message, "param": None, "line": line}],
    }
