"""Which weights answer under a model name: one probe text's vector, matched across runs.

An OpenAI-compatible server (Ollama, vLLM, TEI) can change the model behind a name: a
re-pull, another quantisation, a new tag. The cache would then serve vectors of the old
weights next to new ones. With ``fingerprint=True`` a backend embeds one fixed probe
text once per process and vector space, and its cache namespace names the revision that
vector belongs to.

Matching, not hashing: a server's vector of the same text can differ in its last bits
from one run to the next (GPU kernels, thread counts), and any digest of rounded floats
flips on such noise somewhere among hundreds of coordinates, which would re-pay every
text. So the cache keeps the probe vectors it has met, next to the vectors they lead to
(state room ``fingerprints``); a probe whose cosine with a kept one is at least
:data:`SAME_REVISION_COSINE` is that revision, any other starts a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading

import numpy as np

from .._cache._base import CacheCorruptionError, CacheError, lock_name

__all__ = ["PROBE_TEXT", "SAME_REVISION_COSINE", "resolve_revision"]

#: The text embedded to recognise the weights (a pangram: every letter, short).
PROBE_TEXT = "skembed fingerprint probe: the quick brown fox jumps over the lazy dog."
#: Cosine at or above which two probe vectors come from the same weights. Run-to-run
#: noise leaves it at 1 - 1e-6 or closer; another model, fine-tune or quantisation of
#: the same model moves it below 0.999.
SAME_REVISION_COSINE = 0.9999

_lock = threading.Lock()
# (namespace, where its probe vectors are kept or None) -> revision id, once per process.
_resolved = {}


def revision_id(vector):
    """A short name for the revision first met with ``vector`` (16 hex digits)."""
    rounded = np.round(np.asarray(vector, dtype=np.float64), 6).astype("<f8")
    return hashlib.sha256(rounded.tobytes()).hexdigest()[:16]


def resolve_revision(namespace, probe, store):
    """The revision id of the weights behind ``namespace``, probing once per process.

    Parameters
    ----------
    namespace : str
        The vector space without its revision (endpoint, model, width, policies).
    probe : callable
        ``probe()`` returns the unit-norm vector of :data:`PROBE_TEXT` (one request).
    store : CacheStore or None
        Where the probe vectors met so far are kept; ``None`` (no cache) names the
        revision after this probe alone.

    Returns
    -------
    str
        16 hex digits.
    """
    blob = None if store is None else store.state(f"fingerprints/{lock_name(namespace)}.json")
    key = (namespace, None if blob is None else blob.location)
    with _lock:
        known = _resolved.get(key)
    if known is not None:
        return known
    vector = np.asarray(probe(), dtype=np.float64).ravel()
    if blob is None:
        revision = revision_id(vector)
    else:
        # Read, match and append under the space's lock, so that two processes meeting
        # new weights at once agree on one revision instead of each writing its own.
        with store.lock(namespace + "|fingerprints"):
            revision = _match_or_add(blob, vector)
    with _lock:
        return _resolved.setdefault(key, revision)


def _match_or_add(blob, vector):
    revisions = _read(blob)
    for entry in revisions:
        kept = np.asarray(entry["vector"], dtype=np.float64)
        if kept.shape == vector.shape and float(kept @ vector) >= SAME_REVISION_COSINE:
            return entry["id"]
    revision = revision_id(vector)
    revisions.append({"id": revision, "vector": [round(float(v), 8) for v in vector]})
    # A read-only cache: the revision holds for this process, whose new vectors go to a
    # temporary cache anyway.
    with contextlib.suppress(CacheError, OSError):
        blob.write(json.dumps({"probe": PROBE_TEXT, "revisions": revisions}).encode())
    return revision


def _read(blob):
    data = blob.read()
    if data is None:
        return []
    try:
        record = json.loads(data)
        revisions = record["revisions"]
        if record.get("probe") != PROBE_TEXT or not all(
            isinstance(entry["id"], str) and isinstance(entry["vector"], list)
            for entry in revisions
        ):
            raise ValueError("unexpected fields")
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheCorruptionError(
            f"The fingerprint record {blob.location} of the embedding cache is damaged "
            f"({exc}). Delete it: the next call probes the model again, and the vectors "
            "cached under the old record are paid for again.",
            blob.location,
        ) from None
    return revisions
