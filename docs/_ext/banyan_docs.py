"""Sphinx directives that render Banyan's reference tables from the code at
build time, so the docs cannot drift from what the programs do:

- ``banyan-settings``: every field of ``server.settings.Settings``;
- ``banyan-endpoints`` and ``banyan-schema NAME``: the REST API from the
  server's OpenAPI document (``server.views.openapi.document``);
- ``banyan-frames worker|server`` and ``banyan-close-codes``: the worker
  gateway's frames (``banyan.protocol``) and websocket close codes;
- ``banyan-event-types``: the event feed's event types (``banyan.events``);
- ``banyan-tui-keys`` and ``banyan-tui-filters``: the TUI's help tables;
- ``banyan-schema-version``: the database schema version this code writes;
- ``banyan-readme-table KEY``: a Markdown table taken from README.md between
  ``<!-- KEY:start -->`` and ``<!-- KEY:end -->`` (the reliability scorecard,
  the benchmark table), or a note saying where the figures are.

The Markdown and JSON-schema rendering is in ``banyan_tables``; both modules'
plain functions are checked by ``tests/docs`` without a Sphinx build.
"""

from __future__ import annotations

import argparse
import importlib
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from banyan_tables import (
    fields_table,
    inline,
    json_text,
    readme_table,
    schema_rows,
    schema_type,
    table,
)
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# What each websocket close code means; a code in the code without a line
# here fails the build (see close_codes()).
CLOSE_MEANINGS = {
    "CLOSE_NORMAL": "normal close (the answer to `bye`)",
    "CLOSE_GOING_AWAY": "the server is shutting down: reconnect (workers re-attach their tasks)",
    "CLOSE_BAD_FRAME": "a frame that is not valid, or out of order (a first frame that is not "
    "`hello`, another protocol version, `hello` twice); the close reason says which",
    "CLOSE_UNAUTHORIZED": "the connection's token was revoked (worker gateway and event "
    "feed; the worker exits 77). A missing or bad token is refused with HTTP 401 before the "
    "upgrade",
    "CLOSE_FORBIDDEN": "the `hello` names a worker that is not the worker token's (the worker "
    "exits 77). A token whose role may not connect is refused with HTTP 403 before the upgrade",
    "CLOSE_DUPLICATE": "another process is connected as this worker (two workers from one "
    "token): refused; the worker exits 75",
    "CLOSE_REPLACED": "the same worker process connected again (it proved it with its "
    "`welcome` secret): this older socket is closed",
    "CLOSE_LOST": "the server declared this worker lost (silent for `worker_timeout_s`)",
    "CLOSE_TRY_AGAIN": "the server could not record the worker's join (the disk is full, "
    "say), or the worker's name is held by a process that was cut off while running tasks "
    "and may come back: the worker connects again later",
    "CLOSE_TOO_SLOW": "event feed: the subscriber took no data for `event_send_timeout_s`; "
    "resume with `?since=`",
    "CLOSE_SHUTDOWN": "event feed: the server is shutting down; resume with `?since=`",
    "CLOSE_INTERNAL": "event feed: an internal error; resume with `?since=`",
}


# What a frame is for, where its model has no docstring; a frame with neither
# fails the build (see FramesTable).
FRAME_NOTES = {
    "hello": "The first frame of a connection: the worker's name (with a worker token the "
    "token's, or absent), capacity, the queues it serves, and (after a reconnect) the "
    "attempts it still runs with the `secret` of its last `welcome`.",
    "heartbeat": "Every `heartbeat_interval_s` (told in `welcome`); `draining` while it "
    "finishes its tasks after SIGTERM with `--drain`.",
    "progress": "From `banyan progress` inside the task; becomes a `task.progress` event.",
    "usage": "A sample of the task's process tree (every `--usage-interval` seconds); "
    "stored in `/memory_usage`.",
    "finished": "The attempt ended: its exit status string (`success`, `failure`, "
    "`failure (SIGKILL)`, `cancelled`, `abandoned (worker stopped)`), exit code and "
    "usage summary. The server answers `accepted` or `refused`.",
    "welcome": "The answer to `hello`: the worker's name, a new `secret` proving this "
    "process on its next reconnect, the timing settings the worker must follow, and "
    "which of its held attempts go on (`resumed`) or must be stopped (`dropped`).",
    "assigned": "Attempts handed out for a `claim` (possibly none): what to run and "
    "the `execution_key` every report about it must carry.",
    "work_available": "A task the worker's queues serve became available: claim if there "
    "is room. Sent at most once per change, never polled for.",
    "cancel": "Stop this attempt: SIGTERM to its process group, SIGKILL after its "
    "`max_termination_time`, then report `finished` with `cancelled`.",
}


# --- the data the directives show -------------------------------------------------------


def settings_rows() -> list[list[str]]:
    from banyan.paths import data_dir
    from server.settings import Settings

    rows = []
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            made = str(field.default_factory())  # type: ignore[call-arg]
            default = made.replace(str(data_dir()), "<user data dir>/banyan")
        else:
            value = field.default
            default = str(value.value if hasattr(value, "value") else value)
        meaning = (field.description or "").split(" (default")[0]
        rows.append([f"`{name}`", f"`BANYAN_{name.upper()}`", f"`{default}`", meaning])
    return rows


def endpoint_rows() -> list[list[str]]:
    from server.views.openapi import document

    doc = document()
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            refs = sorted(set(re.findall(r"schemas/(\w+)", json_text(body.get("schema", {})))))
            codes = ", ".join(code for code in op["responses"] if code not in ("401", "403"))
            auth = "none" if op.get("security") == [] else "token"
            rows.append(
                [
                    f"`{method.upper()} {path}`",
                    op.get("summary", ""),
                    ", ".join(f"`{r}`" for r in refs) or "—",
                    auth,
                    codes,
                ]
            )
    return rows


def component_schema(name: str) -> dict[str, Any]:
    from server.views.openapi import document

    schemas: dict[str, Any] = document()["components"]["schemas"]
    if name not in schemas:
        raise KeyError(f"no schema {name!r} in /openapi.json (have: {', '.join(schemas)})")
    return dict(schemas[name])


def frame_models(side: str) -> list[Any]:
    from typing import get_args

    from banyan import protocol

    union = {"worker": protocol.WorkerFrame, "server": protocol.ServerFrame}[side]
    return list(get_args(get_args(union)[0]))


def close_codes() -> list[tuple[int, str, str]]:
    """(code, constant, meaning) of every websocket close code in the code."""
    from banyan import protocol
    from server import feed, gateway

    found: dict[str, int] = {}
    for module in (protocol, gateway, feed):
        for name, value in vars(module).items():
            if name.startswith("CLOSE_") and isinstance(value, int):
                found.setdefault(name, value)
    missing = sorted(set(found) - set(CLOSE_MEANINGS))
    if missing:
        raise KeyError(f"close codes without a meaning in docs/_ext: {', '.join(missing)}")
    codes = [(value, f"`{name}`", CLOSE_MEANINGS[name]) for name, value in found.items()]
    # aiohttp's own "message too big", at each socket's max_msg_size.
    limits = [
        f"{getattr(module, attr) // 1024:,} KiB from {who}"
        for module, attr, who in (
            (feed, "SUBSCRIBER_MAX_FRAME_BYTES", "a feed subscriber"),
            (protocol, "MAX_FRAME_BYTES", "a worker"),
        )
        if isinstance(getattr(module, attr, None), int)
    ]
    if limits:
        codes.append((1009, "aiohttp", "a frame over the socket's limit: " + ", ".join(limits)))
    return sorted(codes)


# --- the CLI parsers, with their --help epilogs made reStructuredText --------------------
# sphinx-argparse parses an epilog as reStructuredText; ours are written for a
# terminal (RawDescriptionHelpFormatter): indented example blocks, "byn_…"
# tokens, "*" and "`" as plain characters. These wrappers return each
# program's own parser with every epilog turned into literal blocks and
# escaped prose, so the page shows what `--help` shows.

CLI_MODULES = {
    "banyan": "banyan.cli",
    "banyan-server": "server.cli",
    "banyan-worker": "worker.cli",
    "banyan-tui": "tui.cli",
}
_RST_SPECIAL = re.compile(r"([\\*`|_\[\]<>])")


def epilog_rst(text: str) -> str:
    """A terminal epilog as reStructuredText: a paragraph whose lines after the
    first are indented (``examples:`` and its commands) becomes a literal block."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip("\n")):
        lines = block.splitlines()
        if len(lines) > 1 and all(line.startswith(" ") for line in lines[1:]):
            head = _RST_SPECIAL.sub(r"\\\1", lines[0].rstrip().removesuffix(":"))
            body = textwrap.dedent("\n".join(lines[1:]))
            out.append(head + "::\n\n" + textwrap.indent(body, "   "))
        elif all(line.startswith(" ") for line in lines):
            out.append("::\n\n" + textwrap.indent(textwrap.dedent(block), "   "))
        else:
            out.append(_RST_SPECIAL.sub(r"\\\1", " ".join(line.strip() for line in lines)))
    return "\n\n".join(out) + "\n"


def _for_sphinx(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    if parser.epilog:
        parser.epilog = epilog_rst(parser.epilog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict(action.choices).values():
                _for_sphinx(child)
    return parser


def cli_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of one of the four programs, built by its own ``build_parser``."""
    module = importlib.import_module(CLI_MODULES[prog])
    parser: argparse.ArgumentParser = module.build_parser()
    return _for_sphinx(parser)


def banyan_parser() -> argparse.ArgumentParser:
    return cli_parser("banyan")


def server_parser() -> argparse.ArgumentParser:
    return cli_parser("banyan-server")


def worker_parser() -> argparse.ArgumentParser:
    return cli_parser("banyan-worker")


def tui_parser() -> argparse.ArgumentParser:
    return cli_parser("banyan-tui")


# --- directives -------------------------------------------------------------------------


class _Table(SphinxDirective):
    header: Sequence[str] = ()

    def rows(self) -> list[list[str]]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        try:
            rows = self.rows()
        except KeyError as exc:
            raise self.error(str(exc.args[0])) from exc
        return [table(self.header, rows)]


class SettingsTable(_Table):
    header = ("setting", "environment", "default", "meaning")

    def rows(self) -> list[list[str]]:
        return settings_rows()


class EndpointsTable(_Table):
    header = ("method and path", "what", "body", "auth", "responses (besides 401, 403)")

    def rows(self) -> list[list[str]]:
        return endpoint_rows()


class SchemaTable(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        try:
            schema = component_schema(self.arguments[0])
        except KeyError as exc:
            raise self.error(str(exc.args[0])) from exc
        out: list[nodes.Node] = []
        if schema.get("description"):
            out.append(nodes.paragraph("", "", *inline(schema["description"].replace("``", "`"))))
        if "properties" in schema:
            out.append(fields_table(schema_rows(schema)))
        elif "enum" in schema:
            out.append(nodes.paragraph("", "", *inline(schema_type(schema))))
        return out


class FramesTable(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for model in frame_models(self.arguments[0]):
            schema = model.model_json_schema()
            tag = schema["properties"]["type"]["default"]
            section = nodes.rubric("", "", nodes.literal(tag, tag))
            out.append(section)
            own_doc = model.__doc__ and not model.__doc__.startswith(model.__name__ + "(")
            doc = " ".join(model.__doc__.split()) if own_doc else FRAME_NOTES.get(tag)
            if not doc:
                raise self.error(f"frame {tag!r} has no docstring and no FRAME_NOTES entry")
            out.append(nodes.paragraph("", "", *inline(doc.replace("``", "`"))))
            rows = [r for r in schema_rows(schema) if r[0] != "`type`"]
            if rows:
                out.append(fields_table(rows))
            else:
                out.append(nodes.paragraph("", "No fields besides ", nodes.literal("type", "type")))
            for name, sub in schema.get("$defs", {}).items():
                if name in ("Resources", "GpuSpec"):
                    continue  # described once, with the REST schemas
                out.append(nodes.paragraph("", "", nodes.literal(name, name), nodes.Text(":")))
                out.append(fields_table(schema_rows(sub)))
        return out


class CloseCodesTable(_Table):
    header = ("code", "sent as", "meaning")

    def rows(self) -> list[list[str]]:
        return [[f"`{code}`", name, meaning] for code, name, meaning in close_codes()]


class EventTypesList(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        from banyan.events import EVENT_TYPES

        items = nodes.bullet_list()
        for kind in sorted(EVENT_TYPES):
            items += nodes.list_item("", nodes.paragraph("", "", nodes.literal(kind, kind)))
        return [items]


class TuiKeysTable(_Table):
    header = ("key", "what it does")

    def rows(self) -> list[list[str]]:
        from tui.screens.help import KEYS

        return [[f"`{key}`", what] for key, what in KEYS]


class TuiFiltersTable(_Table):
    header = ("filter", "matches")

    def rows(self) -> list[list[str]]:
        from tui.screens.help import FILTERS

        return [[f"`{text}`", what] for text, what in FILTERS]


class SchemaVersion(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        from server.stores.sqlite.schema import SCHEMA_VERSION

        return [
            nodes.paragraph(
                "",
                f"This version of Banyan ({self.config.release}) writes schema version ",
                nodes.strong(str(SCHEMA_VERSION), str(SCHEMA_VERSION)),
                nodes.Text("."),
            )
        ]


class ReadmeTable(SphinxDirective):
    """The Markdown table between README markers (else the first table of the
    named section), or a note saying where the figures are kept."""

    required_arguments = 1
    option_spec = {"section": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        key = self.arguments[0]
        section = self.options.get("section", "")
        self.env.note_dependency(str(README))
        text = README.read_text(encoding="utf-8") if README.exists() else ""
        rows, found = readme_table(text, key, section)
        where = nodes.paragraph(
            "", "The figures are kept in the README, section ", nodes.emphasis(section, section)
        )
        if not found:
            where += nodes.Text(
                f"; this page shows its table once it sits between the markers "
                f"<!-- {key}:start --> and <!-- {key}:end -->. Until then, read it there."
            )
            note = nodes.note()
            note += where
            return [note]
        where += nodes.Text(", and taken from there when these pages were built.")
        header, body = rows[0], rows[1:]
        width = len(header)
        return [table(header, [(r + [""] * width)[:width] for r in body]), where]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("banyan-settings", SettingsTable)
    app.add_directive("banyan-endpoints", EndpointsTable)
    app.add_directive("banyan-schema", SchemaTable)
    app.add_directive("banyan-frames", FramesTable)
    app.add_directive("banyan-close-codes", CloseCodesTable)
    app.add_directive("banyan-event-types", EventTypesList)
    app.add_directive("banyan-tui-keys", TuiKeysTable)
    app.add_directive("banyan-tui-filters", TuiFiltersTable)
    app.add_directive("banyan-schema-version", SchemaVersion)
    app.add_directive("banyan-readme-table", ReadmeTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
