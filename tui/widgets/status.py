"""The status bar, always on screen: which view, which server, whether the
data is live (``live`` / ``reconnecting…`` / ``stale since hh:mm:ss``), and
how many events a second are arriving."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusBar(Static):
    def show(
        self,
        *,
        title: str,
        server: str,
        link: tuple[str, str],
        rate: str,
        error: str | None,
        read_only: bool,
    ) -> None:
        text = Text(f" {title} ", style="bold reverse")
        text.append(f" {server.removeprefix('http://')} ", style="bold")
        text.append(link[0], style=link[1])
        text.append(f"  {rate}", style="dim")
        if read_only:
            text.append("  read-only", style="bold cyan")
        if error and link[0] != "● live":
            text.append(f"  {error}", style="red")
        text.truncate(max(10, self.size.width or 80), overflow="ellipsis")
        self.update(text, layout=False)
