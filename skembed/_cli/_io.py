"""Tables in, vectors out: what ``skembed embed`` reads and writes.

Inputs are read with pandas (CSV, TSV, JSON Lines; parquet through pyarrow, from the
``data`` extra). Outputs are a parquet file (the id column, then one list column of
float32 per text column), a ``.npy`` array (one text column) or a ``.npz`` archive (one
array per text column, and the ids). Every output is written to a temporary file beside
the target and renamed into place, so a killed run never leaves half a file.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

__all__ = ["UsageError", "check_output", "read_table", "write_vectors"]

_READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
_OUTPUTS = (".parquet", ".npy", ".npz")
_PYARROW_MISSING = (
    "Parquet files need pyarrow, which is not installed: pip install 'skembed[data]' "
    "(or pip install pyarrow)."
)


class UsageError(ValueError):
    """The command line asks for something impossible (exit status 2)."""


def _kind(path):
    if path == "-":
        return "csv"
    name = path.lower()
    for suffix in _COMPRESSIONS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    kind = _READERS.get(os.path.splitext(name)[1])
    if kind is None:
        raise UsageError(
            f"Cannot tell the format of {path!r} from its name: use a .csv, .tsv, .parquet "
            "or .jsonl file (optionally compressed, e.g. .csv.gz), or '-' for CSV on stdin."
        )
    return kind


def read_table(path, columns, id_column=None):
    """The table at ``path`` (``"-"``: CSV on stdin), checked to hold the columns named.

    Text columns are read as strings (a CSV cell ``007`` stays ``"007"``); missing
    cells stay missing, for the transformer's ``on_invalid_text`` policy.
    """
    import pandas as pd

    kind = _kind(path)
    if path != "-" and not os.path.exists(path):
        raise FileNotFoundError(f"No such input file: {path!r}.")
    text_dtypes = dict.fromkeys(columns, "string")
    if kind in ("csv", "tsv"):
        source = sys.stdin if path == "-" else path
        table = pd.read_csv(source, sep="\t" if kind == "tsv" else ",", dtype=text_dtypes)
    elif kind == "jsonl":
        table = pd.read_json(path, lines=True, dtype=False)
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError(_PYARROW_MISSING) from None
        table = pd.read_parquet(path)
    wanted = [*columns, *([id_column] if id_column is not None else [])]
    missing = [name for name in wanted if name not in table.columns]
    if missing:
        raise UsageError(
            f"{path if path != '-' else 'stdin'} has no column "
            + ", ".join(repr(name) for name in missing)
            + "; its columns are "
            + ", ".join(repr(str(name)) for name in table.columns)
            + "."
        )
    if id_column is not None and table[id_column].duplicated().any():
        duplicated = table[id_column][table[id_column].duplicated()].iloc[0]
        raise UsageError(f"The id column {id_column!r} repeats the id {duplicated!r}.")
    return table


def check_output(out, columns, id_column):
    """Refuse, before any work, an output that cannot hold what is asked for."""
    suffix = os.path.splitext(out.lower())[1]
    if suffix not in _OUTPUTS:
        raise UsageError(f"--out must end in .parquet, .npy or .npz, got {out!r}.")
    if suffix == ".npy" and (len(columns) > 1 or id_column is not None):
        raise UsageError(
            "A .npy file holds one array: embed one --column without --id-column, or "
            "write a .parquet or .npz file."
        )
    if suffix == ".npz" and id_column in columns:
        raise UsageError(f"{id_column!r} is both a text column and the id column.")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError(_PYARROW_MISSING) from None
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise UsageError(f"The directory of --out {out!r} does not exist.")
    return suffix


def write_vectors(out, vectors, ids=None, id_column=None):
    """Write ``vectors`` (column name -> (n, d) float32 array) to ``out``, atomically."""
    suffix = os.path.splitext(out.lower())[1]
    directory = os.path.dirname(os.path.abspath(out))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".skembed-", suffix=suffix)
    os.close(handle)
    try:
        if suffix == ".npy":
            (array,) = vectors.values()
            np.save(temporary, array)
        elif suffix == ".npz":
            arrays = dict(vectors)
            if ids is not None:
                arrays[id_column] = np.asarray(ids)
            np.savez(temporary, **arrays)
        else:
            _write_parquet(temporary, vectors, ids, id_column)
        os.replace(temporary, out)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _write_parquet(path, vectors, ids, id_column):
    import pyarrow as pa
    import pyarrow.parquet as pq

    names, arrays = [], []
    if ids is not None:
        names.append(str(id_column))
        arrays.append(pa.array(ids))
    for name, array in vectors.items():
        n, dim = array.shape
        offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
        values = pa.array(np.ascontiguousarray(array, dtype=np.float32).ravel())
        names.append(str(name))
        arrays.append(pa.ListArray.from_arrays(offsets, values))
    pq.write_table(pa.table(arrays, names=names), path)
