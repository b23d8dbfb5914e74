"""The Batch API's configuration (``POST /control/batches``) and its counters."""

from __future__ import annotations

import numbers
from collections import Counter

__all__ = ["BATCH_DEFAULTS", "BatchStats", "check_config", "merge_stats", "n_malformed"]

OUTCOMES = ("completed", "expired", "failed")
_MALFORMED = ("malformed_output_lines", "malformed_output_fraction")
PLAN_FIELDS = {"outcome", "fail_fraction", "complete_fraction", "seconds", *_MALFORMED}

BATCH_DEFAULTS = {
    "completion_seconds": 0.2,
    # Applied in turn to the next batches created: {"outcome": "completed" | "expired" |
    # "failed", "fail_fraction": share of lines answered 500, "complete_fraction": share
    # of lines done before an expiry, "seconds": this batch's completion time,
    # "malformed_output_lines"/"malformed_output_fraction": this batch's, as below}.
    "plans": [],
    # A line with any of these texts among its inputs fails (400) in every batch.
    "fail_texts": [],
    "fail_seed": 0,
    "max_requests_per_batch": 50_000,
    "max_inputs_per_batch": 50_000,
    "max_file_bytes": 200_000_000,
    # Output lines written truncated (invalid JSON), per output file: this many, or this
    # share of its lines, whichever is more. They were embedded and are charged.
    "malformed_output_lines": 0,
    "malformed_output_fraction": 0.0,
    # Most tokens a model may have in batches not yet ended (validating, in progress,
    # finalizing), per organisation, as the real service enforces per rate-limit tier
    # (3,000,000 for text-embedding-3-large at the lowest): a batch that would cross it
    # fails validation with the code "token_limit_exceeded". None: no limit.
    "max_enqueued_tokens": None,
}


def _is_int(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_share(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1


def _check_malformed(where, settings):
    lines = settings.get("malformed_output_lines", 0)
    if not _is_int(lines, 0):
        raise ValueError(f"{where}malformed_output_lines must be an integer >= 0, got {lines!r}.")
    fraction = settings.get("malformed_output_fraction", 0.0)
    if not _is_share(fraction):
        raise ValueError(f"{where}malformed_output_fraction must be in [0, 1], got {fraction!r}.")


def check_config(config):
    """Raise ValueError naming the first bad key of a merged batch configuration."""
    seconds = config["completion_seconds"]
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise ValueError(f"'completion_seconds' must be a number >= 0, got {seconds!r}.")
    for name in ("max_requests_per_batch", "max_inputs_per_batch", "max_file_bytes"):
        value = config[name]
        if not _is_int(value, 1):
            raise ValueError(f"{name!r} must be a positive integer, got {value!r}.")
    if not isinstance(config["fail_seed"], int):
        raise ValueError(f"'fail_seed' must be an integer, got {config['fail_seed']!r}.")
    if not isinstance(config["fail_texts"], list) or not all(
        isinstance(t, str) for t in config["fail_texts"]
    ):
        raise ValueError("'fail_texts' must be a list of strings.")
    _check_malformed("", config)
    limit = config["max_enqueued_tokens"]
    if limit is not None and not _is_int(limit, 1):
        raise ValueError(
            f"'max_enqueued_tokens' must be a positive integer or null, got {limit!r}."
        )
    if not isinstance(config["plans"], list):
        raise ValueError(f"'plans' must be a list, got {config['plans']!r}.")
    for position, plan in enumerate(config["plans"]):
        if not isinstance(plan, dict) or set(plan) - PLAN_FIELDS:
            raise ValueError(
                f"plans[{position}] must be an object with fields {sorted(PLAN_FIELDS)}."
            )
        if plan.get("outcome", "completed") not in OUTCOMES:
            raise ValueError(f"plans[{position}].outcome must be one of {OUTCOMES}.")
        for field in ("fail_fraction", "complete_fraction"):
            if not 0 <= plan.get(field, 0) <= 1:
                raise ValueError(f"plans[{position}].{field} must be in [0, 1].")
        _check_malformed(f"plans[{position}].", plan)


def n_malformed(plan, config, n_outputs):
    """How many of ``n_outputs`` output lines a batch writes malformed."""
    settings = {name: plan.get(name, config[name]) for name in _MALFORMED}
    share = round(settings["malformed_output_fraction"] * n_outputs)
    return min(n_outputs, max(settings["malformed_output_lines"], share))


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


class BatchStats:
    def __init__(self):
        self.files_uploaded = 0
        self.batches_created = 0
        self.lines = 0
        self.inputs = 0
        self.tokens = 0
        self.malformed_lines = 0
        self.token_limit_failures = 0
        self.peak_enqueued_tokens = 0
        self.text_counts = Counter()

    def as_dict(self):
        return {
            "batch_files_uploaded": self.files_uploaded,
            "batches_created": self.batches_created,
            "batch_lines": self.lines,
            "batch_inputs": self.inputs,
            "batch_tokens": self.tokens,
            "batch_malformed_lines": self.malformed_lines,
            "batch_token_limit_failures": self.token_limit_failures,
            "batch_peak_enqueued_tokens": self.peak_enqueued_tokens,
            "text_counts": dict(self.text_counts),
        }
