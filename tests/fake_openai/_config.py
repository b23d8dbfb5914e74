"""The fake server's configuration: defaults, known models, and validation of changes.

The model table is written here on purpose instead of being imported from
``skembed._models``: the server plays the part of the real API, so a mistake in the
client's registry must show up as a disagreement, not be copied into both sides.
"""

from __future__ import annotations

import copy
import numbers
import re
from dataclasses import dataclass

DEFAULT_API_KEY = "sk-fake-skembed-0000"

VECTOR_MODES = ("random", "bag_of_words")
FAULT_KINDS = ("ok", "500", "503", "429", "quota", "drop", "timeout", "slow")
_FAULT_FIELDS = {"kind", "retry_after", "seconds"}
_PROBABILITIES = ("p_500", "p_503", "p_drop", "p_timeout", "p_slow")

INDEX_FAULTS = ("fractional", "duplicate", "missing")
PAD_KINDS = ("json", "junk")
# Headers that frame the reply: overriding them would break the connection, not the client.
_FRAMING_HEADERS = ("content-length", "transfer-encoding", "connection")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# The endpoint-wide limits of the real embeddings API.
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000


@dataclass(frozen=True)
class ModelSpec:
    """What the fake server knows about a model."""

    native_dim: int
    supports_dimensions: bool
    max_input_tokens: int = 8192


KNOWN_MODELS = {
    "text-embedding-3-small": ModelSpec(1536, True),
    "text-embedding-3-large": ModelSpec(3072, True),
    "text-embedding-ada-002": ModelSpec(1536, False),
}

DEFAULT_CONFIG = {
    "api_key": DEFAULT_API_KEY,
    "latency": 0.0,
    "latency_per_1k_tokens": 0.0,
    "rpm": None,
    "tpm": None,
    "burst_seconds": 60.0,
    "faults": [],
    "p_500": 0.0,
    "p_503": 0.0,
    "p_drop": 0.0,
    "p_timeout": 0.0,
    "p_slow": 0.0,
    "timeout_seconds": 10.0,
    "fault_seed": 0,
    "vector_mode": "random",
    "extra_models": {},
    # {model: revision}: the weights served under a name, as when a server re-pulls a
    # model (Ollama, vLLM, TEI); a new revision gives every text a new vector.
    "model_revisions": {},
    "shuffle": True,
    # Hostile answers (docs/testing_offline.rst, "Hostile answers"); all off by default.
    "vector_log10_scale": None,
    "p_zero_row": 0.0,
    "p_nonfinite_row": 0.0,
    "index_fault": None,
    "width_sequence": None,
    "trickle_seconds_per_chunk": 0.0,
    "trickle_chunk_bytes": 1,
    "extra_headers": {},
    "pad_response_bytes": 0,
    "pad_response_kind": "json",
}


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_number(name, value, *, minimum=0.0, allow_none=False, strict=False):
    if value is None and allow_none:
        return
    if not _is_number(value) or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        none = " or null" if allow_none else ""
        raise ValueError(f"{name!r} must be a number {bound}{none}, got {value!r}.")


def _check_fault(position, fault):
    if not isinstance(fault, dict) or fault.get("kind") not in FAULT_KINDS:
        raise ValueError(
            f"faults[{position}] must be an object whose 'kind' is one of {FAULT_KINDS}, "
            f"got {fault!r}."
        )
    unknown = set(fault) - _FAULT_FIELDS
    if unknown:
        raise ValueError(f"faults[{position}] has unknown fields {sorted(unknown)}.")
    for field in ("retry_after", "seconds"):
        if field in fault:
            _check_number(f"faults[{position}].{field}", fault[field])


def _check_extra_models(models):
    if not isinstance(models, dict):
        raise ValueError(f"'extra_models' must be an object, got {models!r}.")
    for name, spec in models.items():
        if isinstance(spec, dict):
            unknown = set(spec) - {"native_dim", "supports_dimensions", "max_input_tokens"}
            if unknown or "native_dim" not in spec:
                raise ValueError(
                    f"extra_models[{name!r}] must be an int or an object with 'native_dim' "
                    "and optionally 'supports_dimensions', 'max_input_tokens'."
                )
            values = [spec["native_dim"], spec.get("max_input_tokens", 1)]
        else:
            values = [spec]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise ValueError(f"extra_models[{name!r}] needs positive integer sizes, got {spec!r}.")


def _is_int_at_least(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_scale(scale):
    if scale is None:
        return
    if (
        not isinstance(scale, list)
        or len(scale) != 2
        or not all(_is_number(bound) and abs(bound) <= 300 for bound in scale)
        or scale[0] > scale[1]
    ):
        raise ValueError(
            "'vector_log10_scale' must be null or [low, high], two numbers with "
            f"-300 <= low <= high <= 300 (powers of ten), got {scale!r}."
        )


def _check_width_sequence(widths):
    if widths is None:
        return
    if (
        not isinstance(widths, list)
        or not widths
        or not all(_is_int_at_least(w, 1) for w in widths)
    ):
        raise ValueError(
            f"'width_sequence' must be null or a non-empty list of positive integers, got "
            f"{widths!r}."
        )


def _check_extra_headers(headers):
    if not isinstance(headers, dict):
        raise ValueError(f"'extra_headers' must be an object of strings, got {headers!r}.")
    for name, value in headers.items():
        if (
            not isinstance(name, str)
            or not _HEADER_NAME.fullmatch(name)
            or name.lower() in _FRAMING_HEADERS
        ):
            raise ValueError(
                f"extra_headers[{name!r}] is not a header name this server may set (a token, "
                f"not one of {_FRAMING_HEADERS})."
            )
        if not isinstance(value, str) or not value.isprintable() or not value.isascii():
            raise ValueError(
                f"extra_headers[{name!r}] must be a printable ASCII string, got {value!r}."
            )


def _check_hostile(merged):
    _check_scale(merged["vector_log10_scale"])
    for name in ("p_zero_row", "p_nonfinite_row"):
        _check_number(name, merged[name])
    if merged["p_zero_row"] + merged["p_nonfinite_row"] > 1:
        raise ValueError("'p_zero_row' and 'p_nonfinite_row' must add up to at most 1.")
    if merged["index_fault"] is not None and merged["index_fault"] not in INDEX_FAULTS:
        raise ValueError(
            f"'index_fault' must be null or one of {INDEX_FAULTS}, got {merged['index_fault']!r}."
        )
    _check_width_sequence(merged["width_sequence"])
    _check_number("trickle_seconds_per_chunk", merged["trickle_seconds_per_chunk"])
    if not _is_int_at_least(merged["trickle_chunk_bytes"], 1):
        raise ValueError(
            f"'trickle_chunk_bytes' must be a positive integer, got "
            f"{merged['trickle_chunk_bytes']!r}."
        )
    _check_extra_headers(merged["extra_headers"])
    if not _is_int_at_least(merged["pad_response_bytes"], 0):
        raise ValueError(
            f"'pad_response_bytes' must be an integer >= 0, got {merged['pad_response_bytes']!r}."
        )
    if merged["pad_response_kind"] not in PAD_KINDS:
        raise ValueError(
            f"'pad_response_kind' must be one of {PAD_KINDS}, got {merged['pad_response_kind']!r}."
        )


def merge_config(config, updates):
    """Return ``config`` updated with ``updates``, or raise ValueError naming the bad key."""
    if not isinstance(updates, dict):
        raise ValueError(f"The configuration must be a JSON object, got {updates!r}.")
    unknown = set(updates) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(
            f"Unknown configuration keys {sorted(unknown)}; known keys: {sorted(DEFAULT_CONFIG)}."
        )
    merged = {**config, **copy.deepcopy(updates)}
    if not isinstance(merged["api_key"], str) or not merged["api_key"]:
        raise ValueError("'api_key' must be a non-empty string.")
    for name in ("latency", "latency_per_1k_tokens", "timeout_seconds", *_PROBABILITIES):
        _check_number(name, merged[name])
    for name in ("rpm", "tpm"):
        _check_number(name, merged[name], allow_none=True, strict=True)
    _check_number("burst_seconds", merged["burst_seconds"], strict=True)
    if sum(merged[name] for name in _PROBABILITIES) > 1:
        raise ValueError(f"The fault probabilities {_PROBABILITIES} must add up to at most 1.")
    if not isinstance(merged["faults"], list):
        raise ValueError(f"'faults' must be a list, got {merged['faults']!r}.")
    for position, fault in enumerate(merged["faults"]):
        _check_fault(position, fault)
    if not isinstance(merged["fault_seed"], int) or isinstance(merged["fault_seed"], bool):
        raise ValueError(f"'fault_seed' must be an integer, got {merged['fault_seed']!r}.")
    if merged["vector_mode"] not in VECTOR_MODES:
        raise ValueError(
            f"'vector_mode' must be one of {VECTOR_MODES}, got {merged['vector_mode']!r}."
        )
    _check_extra_models(merged["extra_models"])
    revisions = merged["model_revisions"]
    if not isinstance(revisions, dict) or not all(
        isinstance(name, str) and isinstance(rev, str) for name, rev in revisions.items()
    ):
        raise ValueError(f"'model_revisions' must map names to strings, got {revisions!r}.")
    if not isinstance(merged["shuffle"], bool):
        raise ValueError(f"'shuffle' must be true or false, got {merged['shuffle']!r}.")
    _check_hostile(merged)
    return merged


def model_table(config):
    """Known models plus the configured ``extra_models``, as ``{name: ModelSpec}``."""
    table = dict(KNOWN_MODELS)
    for name, spec in config["extra_models"].items():
        if isinstance(spec, dict):
            table[name] = ModelSpec(
                spec["native_dim"],
                bool(spec.get("supports_dimensions", False)),
                spec.get("max_input_tokens", 8192),
            )
        else:
            # A bare size describes a compatible server's model: no `dimensions` support.
            table[name] = ModelSpec(spec, False)
    return table


def served_model_key(config, model):
    """The name the vectors of ``model`` are drawn under: with its revision, if any."""
    revision = config["model_revisions"].get(model)
    return model if revision is None else f"{model}@{revision}"
