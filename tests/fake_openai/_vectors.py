"""Deterministic embedding vectors, computed the same way by the server and by tests.

A vector depends only on (model, input bytes, vector mode): an input given as text and
the same input given as its cl100k token ids get the same vector, as with the real API.

- ``random``: the native vector is read from a SHAKE-128 stream keyed by the model and
  the input (one signed byte per entry, + 0.5 so never zero), then normalised. SHAKE
  is ~6x cheaper than seeding a numpy generator per text, which keeps the server's CPU
  cost per input low. Those values and their squares are exact in float32/float64, so the norm is
  exact and the result is bit-identical however the rows are batched.
- ``bag_of_words``: each lowercase word adds 32 signed unit entries at hashed positions
  (a hashing-trick bag of words), the bag is normalised and a per-text ``random`` vector
  of norm 0.2 is added: texts that share words have a higher cosine similarity.

``dimensions=d`` keeps the first ``d`` raw entries and normalises them, i.e. it equals
the truncated and re-normalised native vector (up to float32 rounding), as
text-embedding-3 does.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from skembed._tokens import get_encoding

from ._config import KNOWN_MODELS, VECTOR_MODES

__all__ = ["embed_rows", "expected_vector", "input_bytes"]

_WORD = re.compile(r"\w+")
_NOISE = 0.2


def input_bytes(item):
    """The bytes an input stands for: UTF-8 of a text, or the decoded token ids."""
    if isinstance(item, str):
        return item.encode("utf-8")
    return get_encoding("cl100k_base").decode_bytes(list(item))


def _stream(model_key, data, native_dim):
    return hashlib.shake_128(b"vec\x00" + model_key + data).digest(native_dim)


def _random_raw(stream, n_rows, native_dim):
    values = np.frombuffer(stream, dtype=np.int8).reshape(n_rows, native_dim)
    return values.astype(np.float32) + np.float32(0.5)


def _bag_raw(model_key, data, native_dim):
    noise = _random_raw(_stream(model_key, data, native_dim), 1, native_dim)[0]
    noise = noise.astype(np.float64)
    noise *= _NOISE / np.linalg.norm(noise)
    words = _WORD.findall(data.decode("utf-8", "replace").lower())
    if not words:
        return noise
    codes = np.frombuffer(
        b"".join(
            hashlib.blake2b(b"word\x00" + model_key + w.encode(), digest_size=64).digest()
            for w in words
        ),
        dtype="<u2",
    )
    signs = np.where(codes & 0x8000, 1.0, -1.0)
    bag = np.bincount((codes & 0x7FFF) % native_dim, weights=signs, minlength=native_dim)
    norm = np.linalg.norm(bag)
    return bag / norm + noise if norm else noise


def embed_rows(model, items, native_dim, dimensions=None, vector_mode="random"):
    """Unit-norm float32 vectors ``(len(items), dimensions or native_dim)``.

    ``items`` are byte strings from :func:`input_bytes`.
    """
    model_key = model.encode("utf-8") + b"\x00"
    if vector_mode == "random":
        stream = b"".join(_stream(model_key, data, native_dim) for data in items)
        raw = _random_raw(stream, len(items), native_dim)
    elif vector_mode == "bag_of_words":
        raw = np.array([_bag_raw(model_key, data, native_dim) for data in items])
        raw = raw.reshape(len(items), native_dim).astype(np.float32)
    else:
        raise ValueError(f"vector_mode must be one of {VECTOR_MODES}, got {vector_mode!r}.")
    if dimensions is not None:
        raw = raw[:, :dimensions]
    norms = np.sqrt(np.einsum("ij,ij->i", raw, raw, dtype=np.float64))
    return raw / norms.astype(np.float32)[:, None]


def expected_vector(model, text, dimensions=None, vector_mode="random", *, native_dim=None):
    """The vector the fake server returns for ``text`` (a str or a list of token ids).

    Parameters
    ----------
    model : str
        Model name, or the deployment name on the Azure route.
    text : str or list of int
        The input as sent.
    dimensions : int, optional
        The ``dimensions`` request parameter.
    vector_mode : {"random", "bag_of_words"}, default="random"
        The server's ``vector_mode`` setting.
    native_dim : int, optional
        Native size for a model that is not one of the three OpenAI models (an
        ``extra_models`` entry or an Azure deployment name).

    Returns
    -------
    ndarray of shape (dimensions or native_dim,), dtype float32
    """
    if native_dim is None:
        if model not in KNOWN_MODELS:
            raise ValueError(f"Unknown model {model!r}: pass native_dim=.")
        native_dim = KNOWN_MODELS[model].native_dim
    return embed_rows(model, [input_bytes(text)], native_dim, dimensions, vector_mode)[0]
