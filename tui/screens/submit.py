"""The submit form (``n``): one line per field, validated with ``TaskCreate``
when submitted, errors shown under the field they concern. The submission
itself runs in a worker of this screen, so the server's refusal (a parent
that failed, say) is shown inline too; the form closes with the new id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from banyan.errors import BanyanError
from tui.forms import FIELDS, build_submission
from tui.source import DataSource


class SubmitScreen(ModalScreen[str | None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+s", "submit", "Submit"),
        # Priority, so the app moves the focus while it reads the key, before it hands
        # the next keys on. Left to the Input, Tab bubbles up later, after the app has
        # already forwarded what was typed next to the same Input: fast typing (or a
        # paste) ran the fields together ("sleep 100tui job1 GB").
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]

    def __init__(
        self, source: DataSource, resolve: Callable[[str], str | None], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.resolve = resolve

    def compose(self) -> ComposeResult:
        with Vertical(id="submit-dialog", classes="dialog"):
            yield Static("[b]Submit a task[/b]  (tab moves, enter submits, esc closes)")
            with Grid(id="submit-grid"):
                for spec in FIELDS:
                    yield Label(spec.label, classes="field-label")
                    with Vertical(classes="field"):
                        yield Input(placeholder=spec.placeholder, id=f"f-{spec.key}", compact=True)
                        yield Static("", id=f"e-{spec.key}", classes="error field-error")
            yield Static("", id="submit-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Submit", id="submit", variant="primary")
                yield Button("Cancel", id="close")

    def values(self) -> dict[str, str]:
        return {spec.key: self.query_one(f"#f-{spec.key}", Input).value for spec in FIELDS}

    def show_errors(self, errors: dict[str, str]) -> None:
        for spec in FIELDS:
            label = self.query_one(f"#e-{spec.key}", Static)
            label.update(errors.get(spec.key, ""))
            label.display = spec.key in errors
        if errors:
            first = next(spec.key for spec in FIELDS if spec.key in errors)
            self.query_one(f"#f-{first}", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        result = build_submission(self.values(), self.resolve)
        self.show_errors(result.errors)
        self.query_one("#submit-error", Static).update("")
        if not result.errors:
            self.query_one("#submit-error", Static).update("submitting…")
            self._send(result.body, result.after)

    @work(exclusive=True, group="submit")
    async def _send(self, body: dict[str, Any], after: list[str]) -> None:
        try:
            task_id = await self.source.submit(body, after=after)
        except BanyanError as exc:
            self.query_one("#submit-error", Static).update(exc.message)
            return
        self.dismiss(task_id)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
