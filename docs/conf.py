"""Sphinx configuration for skembed's documentation.

Build (offline, warnings as errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Document (and run the gallery against) the working tree, even when it is not installed.
sys.path.insert(0, str(ROOT))

from sphinx.util import logging  # noqa: E402

import skembed  # noqa: E402

# Plots are written to files during the build; never open a window.
os.environ.setdefault("MPLBACKEND", "Agg")

project = "skembed"
author = "skembed developers"
copyright = "skembed developers"
release = skembed.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build"]
default_role = "literal"

# The build has no network: no intersphinx inventories are fetched, so references to
# sklearn, numpy or pandas objects render as plain code rather than links.

# -- autodoc / autosummary / numpydoc ---------------------------------------------------

autosummary_generate = True
autodoc_default_options = {"members": True}
autodoc_typehints = "none"
# The class template lists the methods itself; numpydoc must not add a second list.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Without intersphinx there is nothing for parameter types to link to.
numpydoc_xref_param_type = False

# -- sphinx-gallery ------------------------------------------------------------------------


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Executed during the build: examples/plot_*.py. The other scripts (such as the
    # several-minute main job, train_text_and_tabular.py) are shown, not run.
    "filename_pattern": r"[\\/]plot_",
    # The gallery holds the plot_*.py examples and the main job; any other script is
    # left out.
    "ignore_pattern": r"^(?!plot_|train_text_and_tabular\.py$)",
    "abort_on_example_error": True,
    # "Examples using X" lists at the end of each API page.
    "doc_module": ("skembed",),
    "backreferences_dir": "gen_modules/backreferences",
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    # The build log ends with a "computation time summary": one line per executed
    # example. No sg_execution_times.rst files in the source tree.
    "min_reported_time": 0,
    "write_computation_times": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    # The examples are numbered (plot_01_classification.py...): the number chooses the
    # reading order, basics first.
    "within_subsection_order": "sphinx_gallery.sorting.FileNameSortKey",
}


# The scikit-learn methods that every user of an estimator calls; their docstrings
# render cleanly without scikit-learn's own documentation.
_SKLEARN_MEMBERS_SHOWN = {"fit_transform", "get_feature_names_out", "get_params", "set_params"}


def _skip_foreign_member(app, what, name, obj, skip, options):
    """Leave out other members that skembed inherits from scikit-learn or Python.

    Their docstrings (``set_output``, ``get_metadata_routing``, ``set_fit_request``,
    ``with_traceback``...) are documented upstream and refer to labels that exist only
    in scikit-learn's own documentation.
    """
    func = getattr(obj, "fget", obj)
    module = getattr(func, "__module__", None) or ""
    if what == "class" and module and not module.startswith("skembed"):
        return name not in _SKLEARN_MEMBERS_SHOWN or not module.startswith("sklearn")
    return skip


# -- every executed example draws its results ------------------------------------------

# Examples that show something other than a measurement, and so may draw nothing
# (none today: every example draws what it shows).
FIGURE_FREE_EXAMPLES = set()


def gallery_figure_counts(examples_dir, gallery_dir):
    """The number of figures sphinx-gallery saved for each ``plot_*.py`` example.

    sphinx-gallery writes the n-th figure of ``plot_x.py`` to
    ``<gallery>/images/sphx_glr_plot_x_00n.png`` (thumbnails live in ``images/thumb``).
    """
    images = Path(gallery_dir) / "images"
    return {
        example.name: len(list(images.glob(f"sphx_glr_{example.stem}_[0-9][0-9][0-9].png")))
        for example in sorted(Path(examples_dir).glob("plot_*.py"))
    }


def _check_gallery_figures(app, exception):
    """Warn (an error under ``-W``) about an executed example that drew no figure."""
    if exception is not None or str(app.config.plot_gallery) in {"0", "False"}:
        return
    counts = gallery_figure_counts(ROOT / "examples", Path(app.srcdir) / "auto_examples")
    logger = logging.getLogger(__name__)
    logger.info("gallery figures: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
    for name, count in counts.items():
        if count == 0 and name not in FIGURE_FREE_EXAMPLES:
            logger.warning(f"examples/{name} drew no figure: show its results as a plot")


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_member)
    app.connect("build-finished", _check_gallery_figures)


# -- HTML -----------------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"skembed {release}"
html_static_path = []
html_theme_options = {
    "description": "Text embeddings as scikit-learn estimators",
    "fixed_sidebar": True,
}
