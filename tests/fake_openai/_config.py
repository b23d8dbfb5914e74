"""The fake server's configuration: defaults, known models, and validation of changes.

The model table is written here on purpose instead of being imported from
``skembed._models``: the server plays the part of the real API, so a mistake in the
client's registry must show up as a disagreement, not be copied into both sides.
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass

DEFAULT_API_KEY = "sk-fake-skembed-0000"

VECTOR_MODES = ("random", "bag_of_words")
FAULT_KINDS = ("ok", "500", "503", "429", "quota", "drop", "timeout", "slow")
_FAULT_FIELDS = {"kind", "retry_after", "seconds"}
_PROBABILITIES = ("p_500", "p_503", "p_drop", "p_timeout", "p_slow")

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
    "shuffle": True,
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
    if not isinstance(merged["shuffle"], bool):
        raise ValueError(f"'shuffle' must be true or false, got {merged['shuffle']!r}.")
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
