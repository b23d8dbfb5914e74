"""The import rules of skembed's layout (design.md §3), read from the source with ``ast``.

The estimators (the only modules that import scikit-learn) sit on top; the plumbing below
them imports no scikit-learn and no estimator module; imports run one way (no cycle); the
cache knows no backend; no module grows past 1,100 lines.

Every ``import`` statement counts, function-level and ``TYPE_CHECKING`` ones included (a
lazy import is still a dependency), and so does ``importlib.import_module("literal")``.
Relative imports are resolved to absolute names the way Python does, a package's
``__init__`` being the package itself. Importing ``a.b.c`` also runs the ``__init__`` of
``a.b``: that is an edge too, unless ``a.b`` is a package the importing module lives in
(being initialised already).
``from skembed import Name`` resolves ``Name`` through the lazy ``_PUBLIC`` map of
``skembed/__init__.py``.

The rules are checked transitively (a plumbing module that imports an unlisted module that
imports scikit-learn breaks the rule), and the helpers are tested on a small synthetic
package, so that a rule that silently finds nothing cannot pass.
"""

from __future__ import annotations

import ast
import inspect
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

import skembed

ROOT = Path(skembed.__file__).parent
MAX_LINES = 1100

# A pattern "x" matches the module x; "x.*" matches the modules inside package x.
ESTIMATORS = [
    "skembed._base",
    "skembed._transformer",
    "skembed._local",
    "skembed._zero_shot",
    "skembed.neighbors",
    "skembed._adapter",
    "skembed._sklearn_compat",
]
CACHE = [
    "skembed._cache",
    "skembed._cache.*",
    "skembed._redis_cache",  # until the Redis store moves into the _cache package
]
BACKENDS = ["skembed.backends", "skembed.backends.*"]
PLUMBING = [
    *BACKENDS,
    *CACHE,
    "skembed._embed",
    "skembed._cost",
    "skembed._usage",
    "skembed._spending",
    "skembed._tokens",
    "skembed._models",
    "skembed._math",
    "skembed._validation",
    "skembed._redis",
    "skembed._fork",
    "skembed._ann",
]
# Neither: the package's lazy front door, the command line, the data loaders, and the
# Dask helper (it calls an estimator's transform, through the estimator it is given).
ENTRY_POINTS = [
    "skembed",
    "skembed.__main__",
    "skembed.datasets",
    "skembed._dask",
    "skembed._cli",  # the command line: one module per command
    "skembed._cli.*",
]


# -- the import graph -------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    target: str  # absolute module name (a skembed module, or an outside one)
    line: int


def module_names(root, package):
    """{module name: source path} of every ``.py`` file under ``root`` (package ``package``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _lazy_names(tree):
    """``{name: module}`` of a package ``__init__``'s lazy ``_PUBLIC`` map (literals only)."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_PUBLIC" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            return {
                key.value: value.value
                for key, value in zip(node.value.keys, node.value.values, strict=True)
                if isinstance(key, ast.Constant) and isinstance(value, ast.Constant)
            }
    return {}


def _resolve(name, level, package):
    """The absolute name of ``from <level dots><name> import ...`` inside ``package``."""
    if not level:
        return name
    base = package.split(".")
    if level > 1:
        base = base[: -(level - 1)]
    return ".".join([*base, name] if name else base)


def import_graph(root, package):
    """``{module: [Import, ...]}`` for every module of the package at ``root``."""
    modules = module_names(root, package)
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in modules.items()}
    lazy = {}
    for name, tree in trees.items():
        if modules[name].name == "__init__.py":
            lazy.update(
                {
                    (name, key): _resolve(
                        value.lstrip("."), len(value) - len(value.lstrip(".")), name
                    )
                    for key, value in _lazy_names(tree).items()
                }
            )

    graph = {}
    for name, tree in trees.items():
        # The package relative imports start from: a package's __init__ is the package.
        own_package = name if modules[name].name == "__init__.py" else name.rpartition(".")[0]
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module, node.level, own_package)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:
                        found.append((submodule, node.lineno))
                    elif (base, alias.name) in lazy:
                        found.append((lazy[base, alias.name], node.lineno))
                    else:
                        found.append((base, node.lineno))
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                target = node.args[0].value
                if target.startswith("."):
                    anchor = getattr(node.args[1], "id", None) if len(node.args) > 1 else None
                    if anchor not in ("__name__", "__package__"):
                        continue  # relative to a package we cannot know statically
                    dots = len(target) - len(target.lstrip("."))
                    start = name if anchor == "__name__" else own_package
                    target = _resolve(target[dots:], dots, start)
                found.append((target, node.lineno))
        edges = []
        for target, line in found:
            # Importing a.b.c runs a.b's __init__ first, unless the importer lives in a.b.
            parts = target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in modules and not (name == parent or name.startswith(parent + ".")):
                    edges.append(Import(parent, line))
            if target != name:
                edges.append(Import(target, line))
        graph[name] = list(dict.fromkeys(edges))
    return graph


def matches(module, patterns):
    return any(module.startswith(p[:-1]) if p.endswith(".*") else module == p for p in patterns)


def _internal(graph, module):
    return [edge for edge in graph[module] if edge.target in graph]


def find_cycles(graph):
    """One cycle per strongly connected component, as ``[Import, ...]`` from its first module."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in _internal(graph, node):
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)

    cycles = []
    for component in components:
        start = min(component)
        # The shortest way back to start, staying in the component.
        came_from = {start: None}
        queue = deque([start])
        end = None
        while queue and end is None:
            node = queue.popleft()
            for edge in _internal(graph, node):
                if edge.target == start:
                    end = (node, edge)
                    break
                if edge.target in component and edge.target not in came_from:
                    came_from[edge.target] = (node, edge)
                    queue.append(edge.target)
        path = [end[1]]
        node = end[0]
        while came_from[node] is not None:
            node, edge = came_from[node]
            path.append(edge)
        path.reverse()
        cycles.append((start, path))
    return cycles


def format_cycle(start, path, graph_files):
    text, here = start, start
    for edge in path:
        text += f" -> {edge.target} ({graph_files[here].name}:{edge.line})"
        here = edge.target
    return text


def forbidden_chains(graph, sources, is_forbidden):
    """For each source module, the shortest import chain to a module ``is_forbidden`` accepts.

    The chain starts at the source and follows skembed's modules (a forbidden outside
    package, such as sklearn, can only be its last link).
    """
    chains = {}
    for source in sorted(m for m in graph if matches(m, sources)):
        came_from = {source: None}
        queue = deque([source])
        while queue and source not in chains:
            node = queue.popleft()
            for edge in graph.get(node, ()):
                target = edge.target
                if target in came_from:
                    continue
                came_from[target] = (node, edge)
                if is_forbidden(target):
                    chain, at = [], target
                    while came_from[at] is not None:
                        at, step = came_from[at]
                        chain.append((at, step))
                    chains[source] = chain[::-1]
                    break
                if target in graph:
                    queue.append(target)
    return chains


def format_chain(chain, files):
    return (
        " -> ".join(f"{module} ({files[module].name}:{edge.line})" for module, edge in chain)
        + f" -> {chain[-1][1].target}"
    )


def long_modules(files, limit=MAX_LINES):
    counts = {name: len(path.read_text().splitlines()) for name, path in files.items()}
    return {name: n for name, n in sorted(counts.items()) if n > limit}


def _is_sklearn(module):
    return module == "sklearn" or module.startswith("sklearn.")


# -- skembed's rules ---------------------------------------------------------------------

FILES = module_names(ROOT, "skembed")
GRAPH = import_graph(ROOT, "skembed")


def test_no_import_cycle():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles among skembed's modules:\n" + "\n".join(
        format_cycle(start, path, FILES) for start, path in cycles
    )


def test_plumbing_imports_no_sklearn_and_no_estimator():
    chains = forbidden_chains(GRAPH, PLUMBING, lambda m: _is_sklearn(m) or matches(m, ESTIMATORS))
    assert not chains, (
        "plumbing modules that import scikit-learn or an estimator module:\n"
        + "\n".join(format_chain(chain, FILES) for chain in chains.values())
    )


def test_cache_imports_no_backend():
    chains = forbidden_chains(GRAPH, CACHE, lambda m: matches(m, BACKENDS))
    assert not chains, "cache modules that import a backend:\n" + "\n".join(
        format_chain(chain, FILES) for chain in chains.values()
    )


def test_no_module_is_too_long():
    too_long = long_modules(FILES)
    assert not too_long, f"modules over {MAX_LINES} lines: " + ", ".join(
        f"{FILES[name].relative_to(ROOT.parent)} ({n})" for name, n in too_long.items()
    )


def test_every_module_is_classified():
    # A new module must say which layer it is in, or the rules above would skip it.
    unclassified = [
        name for name in sorted(GRAPH) if not matches(name, [*PLUMBING, *ESTIMATORS, *ENTRY_POINTS])
    ]
    assert not unclassified, (
        f"add these modules to PLUMBING, ESTIMATORS or ENTRY_POINTS in {Path(__file__).name}: "
        f"{unclassified}"
    )


def test_public_estimators_live_in_estimator_modules():
    from sklearn.base import BaseEstimator

    for name in skembed.__all__:
        obj = getattr(skembed, name)
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
            assert matches(obj.__module__, ESTIMATORS), (name, obj.__module__)
    for pattern in ESTIMATORS:
        assert pattern in GRAPH, f"{pattern} is listed as an estimator module but does not exist"


# -- the helpers catch what they should (a synthetic package) ----------------------------


def _write(root, files):
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(inspect.cleandoc(source) + "\n")


@pytest.fixture
def toy(tmp_path):
    """A package ``toy`` with one of each violation, and lawful imports around them."""
    root = tmp_path / "toy"
    _write(
        root,
        {
            "__init__.py": """
                _PUBLIC = {"Estimator": "._estimator"}
            """,
            # A cycle through a function-level import and a package __init__'s relative one.
            "_store/__init__.py": "from ._disk import Disk",
            "_store/_disk.py": """
                from . import _files

                def resolve():
                    from .._remote import Remote
            """,
            "_store/_files.py": "import os",
            "_remote.py": """
                from ._store._disk import Disk
                from .backends import _http
            """,
            # Lawful: a package's __init__ importing its own submodules, which import
            # each other and a module outside.
            "backends/__init__.py": "from ._http import get",
            "backends/_http.py": "from . import _retry",
            "backends/_retry.py": "from .. import _math",
            "_math.py": "import numpy",
            # Plumbing reaching scikit-learn through an unlisted module, and an estimator
            # through the lazy public map.
            "_job.py": """
                def run():
                    from ._helpers import helper
            """,
            "_helpers.py": "from sklearn.base import clone",
            "_report.py": "from toy import Estimator",
            "_estimator.py": "import importlib\nimportlib.import_module('sklearn.utils')",
            "_long.py": "x = 1\n" * 12,
        },
    )
    return root


def test_graph_resolves_relative_package_and_lazy_imports(toy):
    graph = import_graph(toy, "toy")
    targets = {module: {edge.target for edge in edges} for module, edges in graph.items()}
    assert targets["toy._store"] == {"toy._store._disk"}
    assert targets["toy._store._disk"] == {"toy._store._files", "toy._remote"}
    # "from ._store._disk import" runs toy._store's __init__ too; backends' submodules
    # importing each other do not count their own package.
    assert targets["toy._remote"] == {
        "toy._store",
        "toy._store._disk",
        "toy.backends._http",
        "toy.backends",
    }
    assert targets["toy.backends._http"] == {"toy.backends._retry"}
    assert targets["toy.backends._retry"] == {"toy._math"}
    assert targets["toy._report"] == {"toy._estimator"}
    assert targets["toy._estimator"] == {"importlib", "sklearn.utils"}
    assert targets["toy._helpers"] == {"sklearn.base"}


def test_cycles_are_found_with_their_path(toy):
    graph = import_graph(toy, "toy")
    (start, path), *others = find_cycles(graph)
    assert not others
    text = format_cycle(start, path, module_names(toy, "toy"))
    # The shortest way round, each step naming the import's file and line.
    assert text == "toy._remote -> toy._store._disk (_remote.py:1) -> toy._remote (_disk.py:4)"


def test_forbidden_imports_are_found_transitively(toy):
    graph = import_graph(toy, "toy")
    files = module_names(toy, "toy")
    plumbing = ["toy._job", "toy._report", "toy._math", "toy.backends", "toy.backends.*"]
    chains = forbidden_chains(
        graph, plumbing, lambda m: _is_sklearn(m) or matches(m, ["toy._estimator"])
    )
    assert set(chains) == {"toy._job", "toy._report"}
    assert format_chain(chains["toy._job"], files) == (
        "toy._job (_job.py:2) -> toy._helpers (_helpers.py:1) -> sklearn.base"
    )
    assert (
        format_chain(chains["toy._report"], files) == "toy._report (_report.py:1) -> toy._estimator"
    )
    # The store reaches a backend through toy._remote.
    store = forbidden_chains(
        graph,
        ["toy._store", "toy._store.*"],
        lambda m: matches(m, ["toy.backends", "toy.backends.*"]),
    )
    assert set(store) == {"toy._store", "toy._store._disk"}
    assert [module for module, _ in store["toy._store._disk"]] == [
        "toy._store._disk",
        "toy._remote",
    ]


def test_long_modules_are_found(toy):
    assert long_modules(module_names(toy, "toy"), limit=10) == {"toy._long": 12}
