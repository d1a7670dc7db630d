"""Sphinx configuration: the API reference, the tutorials (executed notebooks) and the guides.

Build with ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors). The
notebooks are copied from ``tutorials/`` and rendered with their committed outputs; nothing
is executed.
"""

import shutil
from pathlib import Path

import numpyro_gmm

DOCS = Path(__file__).resolve().parent
TUTORIALS = DOCS.parent / "tutorials"

project = "numpyro_gmm"
copyright = "the numpyro_gmm authors"
author = "the numpyro_gmm authors"
release = numpyro_gmm.__version__
version = release

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []

# Notebooks are rendered with their committed outputs, never executed here.
nb_execution_mode = "off"
myst_heading_anchors = 3
# The guides link files of the repository (tests/, benchmarks/) that are not doc pages.
suppress_warnings = ["myst.xref_missing"]

autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_title = f"numpyro_gmm {release}"
html_static_path = []


def _copy_tutorials() -> None:
    """Copy the notebooks into the source tree (``docs/tutorials/``, not committed)."""
    target = DOCS / "tutorials"
    target.mkdir(exist_ok=True)
    for notebook in sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb")):
        shutil.copyfile(notebook, target / notebook.name)


_copy_tutorials()
