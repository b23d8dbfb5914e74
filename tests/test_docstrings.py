"""Every public object's docstring passes numpydoc's validator.

"Public" is discovered, not listed: the names in ``__all__`` of ``skembed`` and of every
public submodule, and the public methods and properties that skembed defines on those
classes. Members inherited from scikit-learn (``get_params``, ``set_output``...) or
from Python (``Exception.with_traceback``) are documented upstream and not checked.
That the examples in these docstrings run is checked by pytest's ``--doctest-modules``
over ``skembed/`` (``addopts`` in pyproject.toml).
"""

import importlib
import inspect
import pkgutil

import numpydoc.validate as numpydoc_validate
import pytest
from numpydoc.docscrape import NumpyDocString

import skembed

# Codes the validator reports that skembed's style does not follow, and why.
IGNORED = {
    # An extended summary is optional: many methods say all there is in one line.
    "ES01",
    # "See Also" is written where there is a sibling worth pointing to, not everywhere.
    "SA01",
    # scikit-learn's style names returned values ("self : object", "X_new : ndarray"),
    # which numpydoc wants only when several values are returned.
    "RT02",
}
IGNORED_BY_KIND = {
    # Methods and properties are illustrated by their class's Examples section, as in
    # scikit-learn.
    "method": {"EX01"},
    "property": {"EX01"},
    # A typing.Protocol is never instantiated: its (*args, **kwargs) __init__ is typing's.
    "protocol": {"PR01"},
}


def _public_modules():
    names = []
    for info in pkgutil.walk_packages(skembed.__path__, "skembed."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    # The top level last: an object that a public submodule also exports (the errors of
    # skembed.backends) is checked once, under that submodule's name.
    return [*sorted(names), "skembed"]


def _is_skembed(obj):
    func = getattr(obj, "fget", None) or getattr(obj, "__func__", None) or obj
    return (getattr(func, "__module__", None) or "").startswith("skembed")


def _public_objects():
    """(import path, kind) of each public class, function, method and property, once."""
    seen, found = set(), []
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if id(obj) in seen or not _is_skembed(obj):
                continue
            seen.add(id(obj))
            path = f"{module_name}.{name}"
            if inspect.isclass(obj):
                found.append((path, "protocol" if getattr(obj, "_is_protocol", False) else "class"))
                for attr in sorted(dir(obj)):
                    member = inspect.getattr_static(obj, attr)
                    if attr.startswith("_") or not _is_skembed(member):
                        continue
                    if isinstance(member, property):
                        found.append((f"{path}.{attr}", "property"))
                    elif callable(member) or isinstance(member, classmethod):
                        found.append((f"{path}.{attr}", "method"))
            elif callable(obj):
                found.append((path, "function"))
    return found


PUBLIC = _public_objects()


def test_discovery_finds_the_public_api():
    paths = {path for path, _ in PUBLIC}
    # One witness per kind of object, so that a broken discovery cannot pass silently.
    assert {
        "skembed.OpenAIEmbeddingTransformer",
        "skembed.OpenAIEmbeddingTransformer.transform",
        "skembed.neighbors.cosine_diversity",
        "skembed.datasets.load_bbc_news",
        "skembed.backends.InputTooLongError",
    } <= paths


def _load(path):
    return numpydoc_validate.Validator._load_obj(path)


def _attribute_names(cls):
    doc = NumpyDocString(inspect.getdoc(cls) or "")
    return {name.strip() for item in doc["Attributes"] for name in item.name.split(",")}


def _documented_as_attribute(path, kind):
    """Whether the class documents these names under Attributes instead.

    A record class (a dataclass, an exception) lists its constructor's arguments as
    its Attributes, and a property may be described by one line in the class's
    Attributes section rather than by a docstring of its own: both count.
    """
    if kind == "property":
        owner, name = path.rsplit(".", 1)
        return name in _attribute_names(_load(owner))
    cls = _load(path)
    doc = NumpyDocString(inspect.getdoc(cls) or "")
    documented = {n.strip() for item in doc["Parameters"] for n in item.name.split(",")}
    params = set(inspect.signature(cls).parameters) - {"self"}
    return params <= documented | _attribute_names(cls)


@pytest.mark.parametrize(("path", "kind"), PUBLIC, ids=[path for path, _ in PUBLIC])
def test_docstring(path, kind):
    ignored = IGNORED | IGNORED_BY_KIND.get(kind, set())
    result = numpydoc_validate.validate(path)
    codes = {code for code, _ in result["errors"]}
    if kind == "property" and codes & {"GL08"} and _documented_as_attribute(path, kind):
        return
    if kind == "class" and "PR01" in codes and _documented_as_attribute(path, kind):
        ignored = ignored | {"PR01"}
    errors = [f"{code}: {message}" for code, message in result["errors"] if code not in ignored]
    assert not errors, f"{path}:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    "path", [path for path, kind in PUBLIC if kind not in ("method", "property")]
)
def test_examples_are_doctests(path):
    # Examples must hold runnable ">>>" lines (which --doctest-modules then runs), not
    # only literal blocks that nothing checks.
    doc = NumpyDocString(inspect.getdoc(_load(path)))
    assert any(line.lstrip().startswith(">>>") for line in doc["Examples"]), (
        f"{path} has no doctest in its Examples section"
    )
