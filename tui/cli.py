"""`banyan-tui`: command-line entry point (the full tui arrives with its own issue)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="banyan-tui",
        description="Watch and steer a Banyan server in the terminal.",
    )
    parser.parse_args(argv)
    print("banyan-tui: not available in this version yet (see CHANGELOG.md)", file=sys.stderr)
    return 2
