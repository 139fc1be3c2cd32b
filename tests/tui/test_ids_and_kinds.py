"""What the TUI shows of issue 13: ids the CLI accepts, a task's dependency
kind and a skipped task's status (pure rendering, no app)."""

from __future__ import annotations

from rich.console import Console

from banyan.client.ids import check_id_text
from banyan.dependencies import SKIPPED
from banyan.ids import new_ids
from tui.state import short_id, task_from_doc
from tui.widgets.detail import fields_table


def rendered(table: object) -> str:
    console = Console(width=120, record=True)
    console.print(table)
    return console.export_text()


def test_shown_ids_are_whole_and_accepted_by_the_cli() -> None:
    # Tasks submitted together share their first 18 digits: only the whole id
    # is unambiguous, and the CLI takes it as it is.
    first, second = new_ids(2)
    assert short_id(first) != short_id(second)
    assert check_id_text(short_id(first)) == first


def test_detail_shows_the_kind_and_a_skipped_status() -> None:
    doc = {
        "_id": new_ids(1)[0],
        "command": "./alert.sh",
        "state": "cancelled",
        "run_when": "failure",
        "execution": {"attempt": 0, "exit_status": SKIPPED},
    }
    text = rendered(fields_table(task_from_doc(doc), doc, now=0.0))  # type: ignore[arg-type]
    assert "only if a parent failed" in text
    assert SKIPPED in text
    plain = {**doc, "run_when": "success"}
    assert "only if a parent failed" not in rendered(
        fields_table(task_from_doc(plain), plain, now=0.0)
    )  # type: ignore[arg-type]
