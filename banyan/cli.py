"""`banyan`: command-line entry point (the full CLI arrives with its own issue)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="banyan", description="Submit, watch and cancel Banyan tasks."
    )
    parser.parse_args(argv)
    print("banyan: not available in this version yet (see CHANGELOG.md)", file=sys.stderr)
    return 2
