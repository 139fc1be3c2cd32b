"""``banyan``: the command line, a front end on ``banyan.client``.

``main`` (the ``banyan`` entry point) and ``build_parser`` are in
``banyan.cli.main``; each command is a module named after it.
"""

from banyan.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
