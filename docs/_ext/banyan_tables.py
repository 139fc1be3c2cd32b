"""Rendering helpers for ``banyan_docs``: the README's Markdown subset
(tables between markers, inline code, bold, links) and JSON schemas, turned
into docutils nodes. Plain functions, so ``tests/docs`` checks them without a
Sphinx build."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from docutils import nodes

# --- Markdown (the README's subset) -------------------------------------------------------

_INLINE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\*\*(?P<strong>.+?)\*\*"
    r"|(?<![\w*])\*(?P<em>[^*\s][^*]*?)\*(?![\w*])"
    r"|\[(?P<text>[^\]]+)\]\((?P<url>[^)]+)\)"
)


def split_row(line: str) -> list[str]:
    """The cells of one Markdown table row; ``\\|`` is a literal bar."""
    body = line.strip()
    body = body.removeprefix("|")
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    cells = re.split(r"(?<!\\)\|", body)
    return [cell.strip().replace("\\|", "|") for cell in cells]


def parse_table(text: str) -> list[list[str]]:
    """Rows (header first) of the first Markdown table in ``text``."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if line.strip().startswith("|"):
            cells = split_row(line)
            if all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                continue  # the |---|---| line
            rows.append(cells)
        elif rows:
            break
    return rows


def between_markers(text: str, key: str) -> str | None:
    """What README.md holds between ``<!-- key:start -->`` and ``<!-- key:end -->``."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    if start not in text or end not in text.split(start, 1)[1]:
        return None
    return text.split(start, 1)[1].split(end, 1)[0]


def inline(text: str) -> list[nodes.Node]:
    """Markdown inline markup (code, bold, emphasis, links) as docutils nodes."""
    out: list[nodes.Node] = []
    pos = 0
    for match in _INLINE.finditer(text):
        if match.start() > pos:
            out.append(nodes.Text(text[pos : match.start()]))
        if match["code"] is not None:
            out.append(nodes.literal(match["code"], match["code"]))
        elif match["strong"] is not None:
            out.append(nodes.strong("", "", *inline(match["strong"])))
        elif match["em"] is not None:
            out.append(nodes.emphasis("", "", *inline(match["em"])))
        else:
            url = match["url"]
            if url.startswith("#") or "://" not in url:
                out.append(nodes.Text(match["text"]))  # a README anchor or file: just the words
            else:
                out.append(nodes.reference("", match["text"], refuri=url))
        pos = match.end()
    if pos < len(text):
        out.append(nodes.Text(text[pos:]))
    return out


# --- tables -----------------------------------------------------------------------------


def _cell(content: str | Sequence[nodes.Node]) -> nodes.entry:
    para = nodes.paragraph()
    if isinstance(content, str):
        para += inline(content)
    else:
        para += list(content)
    return nodes.entry("", para)


def _text_length(content: str | Sequence[nodes.Node]) -> int:
    if isinstance(content, str):
        return len(content)
    return sum(len(n.astext()) for n in content)


def _widths(rows: Sequence[Sequence[str | Sequence[nodes.Node]]]) -> list[int]:
    """Column widths (the text builder uses them as characters; HTML as ratios)."""
    columns = zip(*rows, strict=False)
    return [max(6, min(48, max(_text_length(c) for c in column))) for column in columns]


def table(
    header: Sequence[str], rows: Iterable[Sequence[str | Sequence[nodes.Node]]]
) -> nodes.table:
    """A docutils table; cells are Markdown-ish strings or ready nodes."""
    body_rows = [list(r) for r in rows]
    tbl = nodes.table(classes=["banyan-table"])
    group = nodes.tgroup(cols=len(header))
    tbl += group
    for width in _widths([list(header), *body_rows]):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for title in header:
        row += _cell(title)
    head += row
    body = nodes.tbody()
    group += body
    for cells in body_rows:
        row = nodes.row()
        for content in cells:
            row += _cell(content)
        body += row
    return tbl


# --- JSON schema in words ---------------------------------------------------------------


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def schema_type(schema: dict[str, Any]) -> str:
    """A short human description of a JSON schema (type and limits)."""
    if "$ref" in schema:
        return f"`{_ref_name(schema['$ref'])}`"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [schema_type(s) for s in schema[key] if s.get("type") != "null"]
            return " or ".join(dict.fromkeys(parts))
    if "const" in schema:
        return f"`{schema['const']!r}`".replace("'", '"')
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    limits: list[str] = []
    if kind == "array":
        text = f"list of {schema_type(schema.get('items', {}))}"
        if "maxItems" in schema:
            limits.append(f"≤ {schema['maxItems']:,} items")
    elif kind == "string":
        text = "string"
        pattern = schema.get("pattern", "")
        if pattern in (r"^[0-9a-f]{24}$", r"^[0-9a-fA-F]{24}$"):
            text = "id (24 hex digits)"
        elif len(pattern) > 60:
            text = "duration string"
        elif "maxLength" in schema:
            limits.append(f"≤ {schema['maxLength']:,} chars")
    elif kind in ("integer", "number"):
        text = kind
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is not None and high is not None:
            limits.append(f"{_number(low)} to {_number(high)}")
        elif low is not None:
            limits.append(f"≥ {_number(low)}")
        elif high is not None:
            limits.append(f"≤ {_number(high)}")
    elif kind == "object":
        text = "object"
        if "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
            text = f"object of {schema_type(schema['additionalProperties'])}"
    else:
        text = str(kind)
    return f"{text} ({', '.join(limits)})" if limits else text


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def schema_rows(schema: dict[str, Any]) -> list[list[str]]:
    """One row per property: name, type, default or "required", description."""
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        if name in required:
            default = "required"
        elif "default" in prop:
            value = prop["default"]
            default = "—" if value is None else f"`{json_text(value)}`"
        else:
            default = "—"
        rows.append([f"`{name}`", schema_type(prop), default, prop.get("description", "")])
    return rows


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def fields_table(rows: list[list[str]]) -> nodes.table:
    """Field rows; the notes column only when some field has a note."""
    if any(row[3] for row in rows):
        return table(("field", "type", "default", "notes"), rows)
    return table(("field", "type", "default"), [row[:3] for row in rows])


def readme_section(text: str, title: str) -> str | None:
    """The body of the README's ``## title`` section (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(title)}[ \t]*$", text, flags=re.MULTILINE)
    if match is None:
        return None
    rest = text[match.end() :]
    following = re.search(r"^## ", rest, flags=re.MULTILINE)
    return rest[: following.start()] if following else rest


def readme_table(text: str, key: str, section: str) -> tuple[list[list[str]], str]:
    """The rows of the table between the ``key`` markers, else of the first
    table in ``## section``; and where they were found ("" = nowhere)."""
    block = between_markers(text, key)
    if block is not None and len(rows := parse_table(block)) >= 2:
        return rows, "markers"
    body = readme_section(text, section) if section else None
    if body is not None and len(rows := parse_table(body)) >= 2:
        return rows, "section"
    return [], ""
