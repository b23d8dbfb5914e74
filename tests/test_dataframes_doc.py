"""docs/dataframes.rst runs as written (its code blocks, in order, in one namespace).

The issue's check: "a polars pipeline from the docs runs as written". The comments
giving a result in the page are compared with what the code gives.
"""

import re
from pathlib import Path

import polars as pl

PAGE = Path(__file__).resolve().parents[1] / "docs" / "dataframes.rst"


def _python_blocks(text):
    blocks = re.findall(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text, flags=re.M)
    return ["\n".join(line[4:] for line in block.splitlines()) for block in blocks]


def test_the_page_runs_as_written():
    blocks = _python_blocks(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) == 3
    namespace = {"__name__": "__main__"}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)
    assert isinstance(namespace["table"], pl.DataFrame)
    assert (namespace["table"].columns[:2], namespace["table"].columns[-1]) == (
        ["review_0", "review_1"],
        "age",
    )
    assert namespace["vectors"].shape == (6, 384)
    assert set(namespace["vectors"].schema.values()) == {pl.Float32}
    assert namespace["message"].split(". ")[0] == (
        "Found a missing value (None/NaN) at row 1 (index 'r17') in column 'review'"
    )
    assert (namespace["zeros"][1] == 0).all() and (namespace["zeros"][0] != 0).any()
