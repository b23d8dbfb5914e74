"""The lines of the Batch API's files: reading an input file, writing output lines."""

from __future__ import annotations

import json
import uuid

__all__ = [
    "ENDPOINT",
    "error_list",
    "expired_line",
    "malformed",
    "new_id",
    "output_line",
    "parse_input",
]

ENDPOINT = "/v1/embeddings"


def new_id(prefix):
    return (
        f"{prefix}-{uuid.uuid4().hex[:24]}" if prefix == "file" else f"{prefix}_{uuid.uuid4().hex}"
    )


def error_list(code, message, line=None):
    return {
        "object": "list",
        "data": [{"code": code, "message": message, "param": None, "line": line}],
    }


def parse_input(content, config):
    """``(lines, None)`` for a valid input file, else ``(None, errors object)``."""
    if len(content) > config["max_file_bytes"]:
        return None, error_list(
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
            return None, error_list("invalid_json_line", "This line is not valid JSON.", number)
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            return None, error_list("missing_required_parameter", "Missing 'custom_id'.", number)
        if line["custom_id"] in seen:
            return None, error_list(
                "duplicate_custom_id",
                f"The custom_id for this request is a duplicate of another request: "
                f"{line['custom_id']}.",
                number,
            )
        if line.get("method") != "POST" or line.get("url") != ENDPOINT:
            return None, error_list(
                "invalid_request",
                f"Each request must be a POST to {ENDPOINT}, the batch's endpoint.",
                number,
            )
        seen.add(line["custom_id"])
        body = line.get("body")
        inputs = body.get("input") if isinstance(body, dict) else None
        n_inputs += len(inputs) if isinstance(inputs, list) else 1
        lines.append(line)
    if not lines:
        return None, error_list("empty_file", "The input file has no requests.")
    if len(lines) > config["max_requests_per_batch"]:
        return None, error_list(
            "too_many_requests",
            f"The input file has {len(lines)} requests; a batch may have at most "
            f"{config['max_requests_per_batch']}.",
        )
    if n_inputs > config["max_inputs_per_batch"]:
        return None, error_list(
            "too_many_inputs",
            f"The batch has {n_inputs} embedding inputs; /v1/embeddings batches may have "
            f"at most {config['max_inputs_per_batch']} across all requests.",
        )
    return lines, None


def output_line(custom_id, status, body):
    head = {"id": new_id("batch_req"), "custom_id": custom_id}
    request_id = json.dumps(new_id("req"))
    return (
        json.dumps(head)[:-1].encode()
        + b',"response":{"status_code":%d,"request_id":%s,"body":' % (status, request_id.encode())
        + body
        + b'},"error":null}\n'
    )


def malformed(line):
    """An output line cut in the middle: invalid JSON, still one line."""
    return line[: len(line) // 2] + b"\n"


def expired_line(line, code):
    messages = {
        "batch_expired": "This request could not be executed before the completion window expired.",
        "batch_cancelled": "This request could not be executed before the batch was cancelled.",
    }
    record = {
        "id": new_id("batch_req"),
        "custom_id": line["custom_id"],
        "response": None,
        "error": {"code": code, "message": messages[code]},
    }
    return json.dumps(record).encode() + b"\n"
