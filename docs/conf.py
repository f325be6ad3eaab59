"""Sphinx configuration of labelloop's documentation (built by ``bash scripts/docs.sh``).

The build runs offline with warnings as errors (``sphinx-build -n -W --keep-going``): no
intersphinx; a third-party name that autodoc cannot resolve goes in ``nitpick_ignore`` or
``nitpick_ignore_regex`` below.
"""

from __future__ import annotations

import sys
from pathlib import Path

# the repository root, so autodoc imports labelloop (and assets, resources, pipelines) from the checkout
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

project = "labelloop"
author = "labelloop maintainers"
copyright = "2026, labelloop maintainers"  # noqa: A001 - Sphinx's name for it
release = "0.1.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# every reference must resolve (-n); names of other projects that cannot, listed here
nitpicky = True
nitpick_ignore: list[tuple[str, str]] = []
_THIRD_PARTY = ("pathlib", "os", "io", "typing", "types", "contextlib", "collections", "datetime", "threading", "socket", "http", "xml",
                "concurrent", "torch", "numpy", "PIL", "pyarrow", "upath", "annotated_types", "pydantic",
                "pydantic_core", "typing_extensions", "dagster", "click", "filelock", "label_studio_sdk",
                "transformers", "segment_anything", "matplotlib", "cleanlab", "pycocotools", "scipy", "sklearn",
                "defusedxml", "boto3", "botocore", "fsspec", "s3fs", "imagehash", "yaml", "markdown_it", "requests")
nitpick_ignore_regex: list[tuple[str, str]] = [
    # names of other projects: no inventory can be fetched offline
    (r"py:.*", r"(%s)(\..*)?" % "|".join(_THIRD_PARTY)),
    # pydantic's Field constraints, which autodoc shows as annotations (Gt(0.0), _PydanticGeneralMetadata...)
    (r"py:class", r"_Pydantic.*"),
    (r"py:class", r"Path|PurePosixPath|BaseModel"),  # string annotations autodoc shows unresolved
    (r"py:class", r"-?\d+(\.\d+)?"),
    # type variables of generic helpers (runtime.T, runtime.R)
    (r"py:class", r"labelloop(\.\w+)*\.[A-Z]"),
]

# MyST: ::: fences for directives; anchors on headings down to ###, so page#heading links resolve
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# Google-style docstrings
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Returns:" text stays prose (our return docs describe shapes and units, not one class to link)
napoleon_use_rtype = False

autodoc_member_order = "bysource"
# types in the parameter lists, not the signature line (Sphinx misreads "list[tuple[str, str]] = <factory>")
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"  # the parameters a docstring describes

# code blocks say their language; one without it is shown as plain text
highlight_language = "none"

html_theme = "alabaster"
html_title = "labelloop"
html_theme_options = {"description": "Image labeling on Dagster: pre-labels, review, QA, DVC releases"}


def _document_constants(app, what, name, obj, skip, options):
    """Module constants (UPPER_CASE names assigned in the module) are part of the API: docstrings
    refer to them (``PHASH_METHOD``, the table schemas...), so they are documented even when they
    carry no doc comment."""
    if what == "module" and name.isupper() and not name.startswith("_"):
        return False
    return None


def setup(app):
    app.connect("autodoc-skip-member", _document_constants)
