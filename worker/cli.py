"""`banyan-worker`: command-line entry point (the full worker arrives with its own issue)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="banyan-worker",
        description="Run tasks from a Banyan server on this machine.",
    )
    parser.parse_args(argv)
    print("banyan-worker: not available in this version yet (see CHANGELOG.md)", file=sys.stderr)
    return 2
