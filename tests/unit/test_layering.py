"""Imports flow one way: ``banyan`` ← ``server``/``worker``/``tui``, never
sideways. import-linter checks the packages (``make check``); this test also
covers what it cannot express (``aiohttp.web`` is a subpackage of an external
package) and runs in ``make test``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Nothing shipped imports the test and bench harness (``testbed``, not installed).
NOT_SHIPPED = {"testbed", "bench", "tests"}
FORBIDDEN = {
    "banyan": {"server", "worker", "tui", "textual", "aiohttp.web", *NOT_SHIPPED},
    "server": {"worker", "tui", "textual", *NOT_SHIPPED},
    "worker": {"server", "tui", "textual", *NOT_SHIPPED},
    "tui": {"server", "worker", "banyan.cli", *NOT_SHIPPED},
    # The client library is what the CLI and the TUI are built on, not the reverse.
    "banyan/client": {"banyan.cli", "textual", *NOT_SHIPPED},
    # the domain is pure (import-linter checks the packages; the standard
    # library's sqlite3 and asyncio are only visible here)
    "server/domain": {
        "server.stores",
        "server.views",
        "aiohttp",
        "sqlite3",
        "aiosqlite",
        "asyncio",
    },
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    bad = FORBIDDEN[package]
    offences = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in imported_modules(path)
        if any(module == b or module.startswith(b + ".") for b in bad)
    ]
    assert offences == []
