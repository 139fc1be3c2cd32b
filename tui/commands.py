"""The command palette's Banyan commands (``ctrl+p``): the views, common
filters and sorts, and (unless read-only) submit, cancel and retry. Each runs
the same action as its key. The views come from the view registry."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.views import VIEWS

VIEW_COMMANDS = tuple((spec.label, spec.about, f"view('{spec.name}')") for spec in VIEWS)
FILTER_COMMANDS = (
    ("Filter: running tasks", "state:running", "set_filter('state:active')"),
    ("Filter: failed tasks", "state:failed", "set_filter('state:failed')"),
    ("Filter: waiting tasks", "state:waiting", "set_filter('state:waiting')"),
    ("Filter: clear", "show every task", "set_filter('')"),
    ("Sort: newest first", "-created", "set_sort('-created')"),
    ("Sort: by state", "running first", "set_sort('+state')"),
    ("Sort: by priority", "highest first", "set_sort('-priority')"),
    ("Sort: by name", "a to z", "set_sort('+name')"),
    ("Help", "every key", "help"),
)
MUTATING_COMMANDS = (
    ("Submit a task", "the submit form (n)", "submit"),
    ("Cancel selected", "cancel the selected task(s) (c)", "cancel"),
    ("Cancel tree", "cancel the task and what follows it (C)", "cancel_tree"),
    ("Retry", "run a failed task again (r)", "retry"),
)


class BanyanCommands(Provider):
    def _commands(self) -> list[tuple[str, str, str]]:
        commands = [*VIEW_COMMANDS, *FILTER_COMMANDS]
        if not getattr(self.app, "read_only", False):
            commands += MUTATING_COMMANDS
        return commands

    async def discover(self) -> Hits:
        for name, help_text, action in self._commands():
            yield DiscoveryHit(name, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, action in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(name),
                    partial(self.app.run_action, action),
                    help=help_text,
                )
