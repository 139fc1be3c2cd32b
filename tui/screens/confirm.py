"""A yes/no question naming what it is about (cancel these tasks?)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, details: str, *, yes: str = "Yes", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.question = question
        self.details = details
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Static(f"[b]{self.question}[/b]", id="confirm-question")
            yield Static(self.details, id="confirm-details", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} [y]", id="yes", variant="error")
                yield Button("No [n]", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)
