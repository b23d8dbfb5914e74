"""Hostile answers: rows of any magnitude, zero and non-finite rows, malformed indices.

Everything here is a pure function of its arguments, so the server and the tests
compute the same thing: :func:`row_fate` tells what the server does to a text's row,
:func:`expected_wire_row` what the client then decodes, and :func:`wire_items` which
``index`` each item of an answer carries.

A row's fate depends only on ``fault_seed`` and the input's bytes (a text and its
token ids share it), not on the model, the batch it came in, or how often it was sent:
a zero row stays zero on every retry until the seed or the knob changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ._vectors import expected_vector, input_bytes

__all__ = [
    "ROW_KNOBS",
    "RowFate",
    "expected_wire_row",
    "row_fate",
    "row_knobs_active",
    "shape_rows",
    "wire_items",
]

# The configuration keys that decide a row's fate, as row_fate() takes them.
ROW_KNOBS = ("fault_seed", "vector_log10_scale", "p_zero_row", "p_nonfinite_row")
_UNIT = 2.0**-64


@dataclass(frozen=True)
class RowFate:
    """What the server does to one row before encoding it.

    ``kind`` is ``"scaled"`` (the unit vector times ``10 ** log10_scale``; ``log10_scale``
    is 0 without ``vector_log10_scale``), ``"zero"`` (every entry 0.0) or
    ``"nonfinite"`` (the scaled row with entry ``nan_at`` set to NaN and, for a row
    of two entries or more, entry ``inf_at`` set to +inf).
    """

    kind: str
    log10_scale: float = 0.0
    nan_at: int = 0
    inf_at: int = 1

    @property
    def scale(self):
        return 10.0**self.log10_scale


def row_knobs_active(config):
    """Whether any row knob is on (else answers are the plain unit vectors)."""
    return bool(
        config["vector_log10_scale"] is not None
        or config["p_zero_row"]
        or config["p_nonfinite_row"]
    )


def _fate(data, fault_seed, vector_log10_scale, p_zero_row, p_nonfinite_row, width):
    digest = hashlib.blake2b(
        b"row\x00" + str(fault_seed).encode() + b"\x00" + data, digest_size=32
    ).digest()
    draw_kind, draw_scale, draw_nan, draw_inf = (
        int.from_bytes(digest[i : i + 8], "little") for i in range(0, 32, 8)
    )
    log10_scale = 0.0
    if vector_log10_scale is not None:
        low, high = vector_log10_scale
        log10_scale = low + (high - low) * (draw_scale * _UNIT)
    nan_at = draw_nan % width
    inf_at = (nan_at + 1 + draw_inf % (width - 1)) % width if width > 1 else nan_at
    draw = draw_kind * _UNIT
    if draw < p_zero_row:
        kind = "zero"
    elif draw < p_zero_row + p_nonfinite_row:
        kind = "nonfinite"
    else:
        kind = "scaled"
    return RowFate(kind, log10_scale, nan_at, inf_at)


def row_fate(
    text,
    width=1536,
    *,
    fault_seed=0,
    vector_log10_scale=None,
    p_zero_row=0.0,
    p_nonfinite_row=0.0,
):
    """The fate of ``text``'s row under the given server configuration.

    Parameters
    ----------
    text : str or list of int
        The input as sent.
    width : int, default=1536
        The row's length (it only places the NaN and inf of a ``"nonfinite"`` row).
    fault_seed, vector_log10_scale, p_zero_row, p_nonfinite_row
        The server's settings of the same names, so that one dict can feed both
        ``server.configure(**knobs)`` and ``row_fate(text, **knobs)``.

    Returns
    -------
    RowFate
    """
    return _fate(
        input_bytes(text), fault_seed, vector_log10_scale, p_zero_row, p_nonfinite_row, width
    )


def _apply(unit_rows, fates):
    """float64 rows: each unit row scaled, zeroed or poisoned as its fate says."""
    rows = unit_rows.astype(np.float64)
    rows *= np.array([fate.scale for fate in fates])[:, None]
    for position, fate in enumerate(fates):
        if fate.kind == "zero":
            rows[position] = 0.0
        elif fate.kind == "nonfinite":
            rows[position, fate.inf_at] = np.inf
            rows[position, fate.nan_at] = np.nan
    return rows


def shape_rows(unit_rows, datas, config):
    """The rows an answer carries: ``unit_rows`` (float32) as is, or hostile float64 ones.

    ``datas`` are the inputs' bytes (:func:`input_bytes`), in row order.
    """
    if not row_knobs_active(config):
        return unit_rows
    knobs = {name: config[name] for name in ROW_KNOBS}
    width = unit_rows.shape[1]
    return _apply(unit_rows, [_fate(data, width=width, **knobs) for data in datas])


def encode_rows(rows, encoding_format):
    """What goes on the wire: float64 as is for ``float``, float32 for ``base64``.

    Beyond float32's range a value becomes +-inf and below it 0 (or a subnormal), as a
    server holding float32 vectors would send them.
    """
    if encoding_format == "base64" and rows.dtype != np.float32:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return rows.astype(np.float32)
    return rows


def expected_wire_row(
    model,
    text,
    dimensions=None,
    vector_mode="random",
    *,
    native_dim=None,
    encoding_format="base64",
    **knobs,
):
    """The row a client decodes from the wire for ``text`` under the row knobs.

    Parameters
    ----------
    model, text, dimensions, vector_mode, native_dim
        As for :func:`expected_vector`.
    encoding_format : {"base64", "float"}, default="base64"
        ``"base64"`` gives the float32 row decoded from base64 (values beyond float32's
        range are inf there); ``"float"`` the float64 row parsed from the JSON numbers
        (NaN and Infinity are written as Python's ``json`` writes them).
    **knobs
        ``fault_seed``, ``vector_log10_scale``, ``p_zero_row``, ``p_nonfinite_row``.

    Returns
    -------
    ndarray of shape (width,), float32 for base64, float64 for float
        Equal to ``expected_vector(...)`` when every knob is off.
    """
    unit = expected_vector(model, text, dimensions, vector_mode, native_dim=native_dim)
    config = {"fault_seed": 0, "vector_log10_scale": None, "p_zero_row": 0.0}
    config = {**config, "p_nonfinite_row": 0.0, **knobs}
    rows = shape_rows(unit[None, :], [input_bytes(text)], config)
    return encode_rows(rows, encoding_format)[0]


def wire_items(n_rows, index_fault=None):
    """``[(row, index)]``: the items of an answer of ``n_rows`` rows, before shuffling.

    Each item carries row ``row``'s vector and the ``index`` value written for it.
    ``index_fault`` (the server's setting) changes the item of the last row, so that
    a client that truncates, deduplicates or counts carelessly pairs a vector with the
    wrong text:

    - ``"fractional"``: its index is ``n_rows - 1.5`` (``2.5`` of four rows; ``0.5`` for a
      single row): truncated, it names the row before it.
    - ``"duplicate"``: its index is ``n_rows - 2``, so that index appears twice with two
      different vectors and ``n_rows - 1`` never; a single row is sent twice.
    - ``"missing"``: it is left out (``n_rows - 1`` items).
    """
    items = [(row, row) for row in range(n_rows)]
    if index_fault is None or not n_rows:
        return items
    last = n_rows - 1
    if index_fault == "fractional":
        items[last] = (last, n_rows - 1.5 if n_rows > 1 else 0.5)
    elif index_fault == "duplicate":
        if n_rows > 1:
            items[last] = (last, last - 1)
        else:
            items.append((0, 0))
    elif index_fault == "missing":
        items.pop()
    else:
        raise ValueError(f"Unknown index_fault {index_fault!r}.")
    return items
