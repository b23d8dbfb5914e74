"""The bytes of an embeddings answer, assembled by hand (fast, and able to lie)."""

from __future__ import annotations

import base64
import json

import numpy as np

from ._hostile import encode_rows

__all__ = ["pad", "render"]

_JUNK = b"<junk not json> "


def _number(value):
    return b"%d" % value if isinstance(value, int) else repr(value).encode()


def _float_row(row):
    if row.dtype == np.float32:
        # 9 significant digits give back the exact float32; 3x faster than json.dumps.
        return ",".join(["%.9g"] * row.shape[0]) % tuple(row.tolist())
    # float64 rows of any magnitude: repr round-trips exactly; json writes NaN/Infinity.
    return json.dumps(row.tolist())[1:-1].replace(" ", "")


def render(request, rows, items=None):
    """The response body of ``rows`` for ``request``.

    ``items`` is ``[(row, index)]`` in the order to write them (default: every row with
    its own index, in order); ``rows`` is float32 (unit rows) or float64 (hostile rows,
    written at full precision as float, cast to float32 for base64).
    """
    rows = encode_rows(rows, request.encoding_format)
    if rows.dtype == np.float32:
        rows = rows.astype("<f4", copy=False)
    if items is None:
        items = [(i, i) for i in range(len(rows))]
    if request.encoding_format == "base64":
        item = b'{"object":"embedding","index":%s,"embedding":"%s"}'
        data = (
            item % (_number(index), base64.b64encode(rows[row].tobytes())) for row, index in items
        )
    else:
        item = '{"object":"embedding","index":%s,"embedding":[%s]}'
        data = (
            (item % (_number(index).decode(), _float_row(rows[row]))).encode()
            for row, index in items
        )
    tokens = request.n_tokens
    return (
        b'{"object":"list","data":['
        + b",".join(data)
        + b'],"model":'
        + json.dumps(request.model).encode()
        + b',"usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (tokens, tokens)
    )


def pad(body, n_bytes, kind):
    """``body`` grown by ``n_bytes``: a huge ignored field (``json``) or trailing junk."""
    if not n_bytes:
        return body
    if kind == "json":
        return body[:-1] + b',"padding":"' + b"x" * n_bytes + b'"}'
    junk = _JUNK * (n_bytes // len(_JUNK) + 1)
    return body + junk[:n_bytes]
