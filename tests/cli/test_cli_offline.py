"""The ``banyan`` CLI without a server: help texts, argument parsing, the task
bodies ``submit`` builds, and the renderings of ``stats`` and ``tree``."""

from __future__ import annotations

import argparse
import io

import pytest
from rich.console import Console

from banyan.cli import build_parser, main
from banyan.cli_common import UsageError
from banyan.cli_submit import build_tasks, command_text, parse_array
from banyan.cli_tasks import build_tree, ls_query, subtree_summary
from banyan.cluster_sample import SAMPLE_STATS  # noqa: F401  (replaced below)

COMMANDS = [
    "submit",
    "ls",
    "show",
    "tree",
    "cancel",
    "retry",
    "wait",
    "logs",
    "workers",
    "stats",
    "events",
    "progress",
]
