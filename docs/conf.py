"""Sphinx configuration of Banyan's documentation (``make docs``).

The reference pages are generated at build time from the code: the CLI from
the argparse parsers (sphinx-argparse), the REST API from the server's
OpenAPI document, settings, frames and the TUI keys by ``_ext/banyan_docs.py``.
"""

from __future__ import annotations

import sys
from importlib.metadata import version as _version
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

project = "Banyan"
author = "the Banyan developers"
copyright = "2026, the Banyan developers"
release = version = _version("banyan")

extensions = ["sphinxarg.ext", "banyan_docs"]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []
default_role = "literal"  # `text` in a page is code, as in the README
highlight_language = "sh"
nitpicky = True

html_theme = "furo"
html_title = "Banyan"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}
