"""The gallery examples paste into a notebook as they are, and the docs build counts
their figures.

Read from the source with ``ast`` (running the examples is the docs build's job, in
``.ci/run``): no example imports a helper module of ``examples/`` or ``argparse``, and
every one that embeds texts chooses its model from ``SKEMBED_EXAMPLE_BACKEND``. The
figure count that ``docs/conf.py`` runs after the build is tested on a made-up gallery,
so a count that finds nothing cannot pass.
"""

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))


def _imported_modules(path):
    """The top-level names of every module ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):  # from . import x: a sibling module
            names.add(".")
    return names


def _load_docs_conf():
    spec = importlib.util.spec_from_file_location("skembed_docs_conf", ROOT / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_the_gallery_is_found():
    assert len(EXAMPLES) >= 17, [path.name for path in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_an_example_needs_no_helper_module_and_no_command_line(path):
    siblings = {other.stem for other in (ROOT / "examples").glob("*.py")}
    imported = _imported_modules(path)
    assert not imported & (siblings | {"."}), (
        f"{path.name} imports {sorted(imported & (siblings | {'.'}))} from examples/: "
        "pasted into a notebook, that import fails"
    )
    assert "argparse" not in imported, f"{path.name} parses a command line"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_an_example_that_embeds_chooses_its_model_from_one_variable(path):
    source = path.read_text(encoding="utf-8")
    if "EmbeddingTransformer(" not in source:
        pytest.skip(f"{path.name} makes no embedding transformer")
    assert 'os.environ.get("SKEMBED_EXAMPLE_BACKEND", "local")' in source, path.name
    assert "OpenAIEmbeddingTransformer(" in source, f"{path.name} has no OpenAI switch"


def test_figures_are_counted_per_example(tmp_path):
    examples, images = tmp_path / "examples", tmp_path / "auto_examples" / "images"
    (images / "thumb").mkdir(parents=True)
    for name in ["plot_01_a.py", "plot_02_b.py", "plot_03_c.py", "helper.py"]:
        (examples / name).parent.mkdir(exist_ok=True)
        (examples / name).write_text("")
    for image in [
        "sphx_glr_plot_01_a_001.png",
        "sphx_glr_plot_01_a_002.png",
        "sphx_glr_plot_03_c_001.png",
        # Neither is a figure of plot_02_b: a thumbnail, another example's prefix.
        "thumb/sphx_glr_plot_02_b_thumb.png",
        "sphx_glr_plot_02_b_extra_001.png",
    ]:
        (images / image).write_bytes(b"")
    counts = _load_docs_conf().gallery_figure_counts(examples, tmp_path / "auto_examples")
    assert counts == {"plot_01_a.py": 2, "plot_02_b.py": 0, "plot_03_c.py": 1}


class _App:
    """The few attributes of a sphinx application the figure check reads."""

    def __init__(self, srcdir, plot_gallery="True"):
        self.srcdir = srcdir
        self.config = type("Config", (), {"plot_gallery": plot_gallery})()


def test_the_build_warns_about_an_example_without_a_figure(tmp_path, monkeypatch):
    conf = _load_docs_conf()
    warnings = []
    monkeypatch.setattr(conf, "ROOT", tmp_path)
    monkeypatch.setattr(
        conf.logging,
        "getLogger",
        lambda name: type(
            "Logger",
            (),
            {"info": lambda self, m: None, "warning": lambda self, m: warnings.append(m)},
        )(),
    )
    monkeypatch.setattr(conf, "FIGURE_FREE_EXAMPLES", {"plot_17_command_line.py"})
    (tmp_path / "examples").mkdir()
    (tmp_path / "docs" / "auto_examples" / "images").mkdir(parents=True)
    for name in ["plot_01_drawn.py", "plot_02_bare.py", "plot_17_command_line.py"]:
        (tmp_path / "examples" / name).write_text("")
    (tmp_path / "docs/auto_examples/images/sphx_glr_plot_01_drawn_001.png").write_bytes(b"")

    conf._check_gallery_figures(_App(tmp_path / "docs"), None)
    assert len(warnings) == 1 and "plot_02_bare.py drew no figure" in warnings[0], warnings

    warnings.clear()  # a build that did not run the examples, or that failed: no count
    conf._check_gallery_figures(_App(tmp_path / "docs", plot_gallery="0"), None)
    conf._check_gallery_figures(_App(tmp_path / "docs"), RuntimeError("build failed"))
    assert warnings == []
