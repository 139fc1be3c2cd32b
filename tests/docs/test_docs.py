"""The documentation's cheap checks (the real build is ``make docs``, with
warnings as errors): every program's parser is documented, every page is in
the table of contents, the generated tables come from the code, the
deployment files are valid for systemd and for the settings model, and the
README's Deployment section shows those same files."""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FILES = DOCS / "operations" / "files"
sys.path.insert(0, str(DOCS / "_ext"))

import banyan_docs  # noqa: E402  (lives in docs/_ext)
import banyan_tables  # noqa: E402


def pages() -> set[str]:
    return {p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.rst")} - {
        p.relative_to(DOCS).with_suffix("").as_posix() for p in (DOCS / "_build").rglob("*.rst")
    }


def toctree_entries(page: str) -> list[str]:
    text = (DOCS / f"{page}.rst").read_text()
    entries = []
    for block in re.findall(r"^\.\. toctree::\n((?:[ \t]+.*\n|\n)+)", text, flags=re.MULTILINE):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith(":"):
                base = str(Path(page).parent)
                entries.append(line.lstrip("/") if line.startswith("/") else f"{base}/{line}")
    return [e.removeprefix("./") for e in entries]


# --- the CLI reference ------------------------------------------------------------------


def test_every_program_has_its_parser_documented() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(banyan_docs.CLI_MODULES) == set(scripts)
    cli_page = (DOCS / "guide" / "cli.rst").read_text()
    documented = dict(re.findall(r":func: (\w+)\n\s+:prog: ([\w-]+)", cli_page))
    assert set(documented.values()) == set(scripts)
    for prog, target in scripts.items():
        module_name = target.split(":")[0]
        assert banyan_docs.CLI_MODULES[prog] == module_name
        parser = importlib.import_module(module_name).build_parser()
        assert isinstance(parser, argparse.ArgumentParser) and parser.prog == prog
        wrapper = next(func for func, p in documented.items() if p == prog)
        assert getattr(banyan_docs, wrapper)().prog == prog


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_cli_module_adds_its_command_to_the_documented_parser() -> None:
    """Each command is a module of ``banyan.cli`` named after it; each is in the
    parser the docs show, and the parser has no command without its module."""
    from banyan.cli.main import COMMANDS

    documented = _subcommands(banyan_docs.banyan_parser())
    modules = sorted(p.stem for p in (ROOT / "banyan" / "cli").glob("*.py"))
    commands = []
    for name in modules:
        module = importlib.import_module(f"banyan.cli.{name}")
        adder = getattr(module, "add_parser", None)
        if adder is None:
            continue  # a helper module (main, context, output)
        probe = argparse.ArgumentParser()
        adder(probe.add_subparsers(), [])
        assert list(_subcommands(probe)) == [name], name
        assert module in COMMANDS, name
        commands.append(name)
    assert sorted(documented) == commands


def test_epilogs_become_literal_blocks_and_escaped_prose() -> None:
    text = "examples:\n  banyan-worker --token byn_...\n  banyan ls\n\nA *star* and `tick`_ here.\n"
    rst = banyan_docs.epilog_rst(text)
    assert "examples::\n\n   banyan-worker --token byn_...\n   banyan ls" in rst
    assert r"A \*star\* and \`tick\`\_ here." in rst
    # Every program's epilog converts (the real check of the markup is the build).
    for prog in banyan_docs.CLI_MODULES:
        parser = banyan_docs.cli_parser(prog)
        assert parser.epilog is None or "::" in parser.epilog or parser.epilog.strip()


# --- pages ------------------------------------------------------------------------------


def test_every_page_is_in_the_toctree_and_every_entry_exists() -> None:
    all_pages = pages()
    reachable = {"index"}
    todo = ["index"]
    while todo:
        page = todo.pop()
        for entry in toctree_entries(page):
            assert entry in all_pages, f"{page}.rst lists {entry}, which does not exist"
            if entry not in reachable:
                reachable.add(entry)
                todo.append(entry)
    assert reachable == all_pages, f"not in any toctree: {sorted(all_pages - reachable)}"
    assert len(all_pages) >= 20


def test_every_doc_link_names_a_page() -> None:
    all_pages = pages()
    for page in all_pages:
        for target in re.findall(
            r":doc:`(?:[^`<]*<)?([^`>]+)>?`", (DOCS / f"{page}.rst").read_text()
        ):
            base = Path(page).parent
            name = target.lstrip("/") if target.startswith("/") else (base / target).as_posix()
            assert name.removeprefix("./") in all_pages, f"{page}.rst links to {target}"


def test_every_openapi_schema_and_path_is_on_the_rest_page() -> None:
    from server.views.openapi import document

    doc = document()
    rest = (DOCS / "reference" / "rest.rst").read_text()
    shown = set(re.findall(r"^\.\. banyan-schema:: (\w+)$", rest, flags=re.MULTILINE))
    generic = {"Error", "Task", "Meta"}  # described in prose (errors, responses)
    assert shown == set(doc["components"]["schemas"]) - generic
    assert ".. banyan-endpoints::" in rest
    rows = banyan_docs.endpoint_rows()
    operations = {(m, p) for p, item in doc["paths"].items() for m in item if m != "parameters"}
    assert len(rows) == len(operations)
    assert {"`GET /health`", "`POST /tasks`", "`GET /events`"} <= {r[0] for r in rows}


def test_generated_tables_follow_the_code() -> None:
    from banyan.events import EVENT_TYPES
    from banyan.protocol import PROTOCOL_VERSION

    settings = {row[0].strip("`"): row for row in banyan_docs.settings_rows()}
    assert set(settings) == set(Settings.model_fields)
    assert settings["port"][2] == "`5100`"
    assert settings["db"][2] == "`<user data dir>/banyan/banyan.db`"
    # Every close code has a meaning (close_codes() raises for one without).
    codes = {code for code, _, _ in banyan_docs.close_codes()}
    assert {4400, 4408, 4409, 4429, 1001} <= codes
    # Every frame is described: its docstring or a FRAME_NOTES entry.
    for side in ("worker", "server"):
        for model in banyan_docs.frame_models(side):
            tag = model.model_fields["type"].default
            has_doc = model.__doc__ and not model.__doc__.startswith(model.__name__ + "(")
            assert has_doc or tag in banyan_docs.FRAME_NOTES, tag
    assert PROTOCOL_VERSION == 1
    events = (DOCS / "reference" / "events.rst").read_text()
    for kind in EVENT_TYPES:
        assert f"``{kind}``" in events, kind


def test_schema_types_in_words() -> None:
    st = banyan_tables.schema_type
    assert st({"type": "string", "maxLength": 1024}) == "string (≤ 1,024 chars)"
    assert st({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == "integer"
    assert st({"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{24}$"}}) == (
        "list of id (24 hex digits)"
    )
    assert st({"type": "integer", "minimum": 0, "maximum": 10000}) == "integer (0 to 10,000)"
    assert st({"$ref": "#/components/schemas/Resources"}) == "`Resources`"
    rows = banyan_tables.schema_rows(
        {"required": ["a"], "properties": {"a": {"type": "number"}, "b": {"default": None}}}
    )
    assert rows == [["`a`", "number", "required", ""], ["`b`", "any", "—", ""]]


# --- the README tables the figure pages show --------------------------------------------


def test_readme_table_between_markers_else_the_section() -> None:
    text = (
        "## Reliability\n\nintro\n\n| fault | lost |\n|---|---|\n| kill -9 | 0 |\n\n"
        "## Benchmarks\n\n<!-- bench-table:start -->\n| a | b |\n|---|---:|\n"
        "| `x \\| y` | **2,244** [link](https://example.org) |\n<!-- bench-table:end -->\n"
    )
    rows, found = banyan_tables.readme_table(text, "bench-table", "Benchmarks")
    assert found == "markers"
    assert rows == [["a", "b"], ["`x | y`", "**2,244** [link](https://example.org)"]]
    rows, found = banyan_tables.readme_table(text, "scorecard", "Reliability")
    assert (found, rows) == ("section", [["fault", "lost"], ["kill -9", "0"]])
    assert banyan_tables.readme_table(text, "scorecard", "Nowhere") == ([], "")
    assert banyan_tables.readme_table(text, "scorecard", "") == ([], "")
    nodes = banyan_tables.inline("**2,244** in `x` and [docs](https://example.org)")
    assert [type(n).__name__ for n in nodes] == ["strong", "Text", "literal", "Text", "reference"]


def test_the_figure_pages_find_their_tables_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    rows, _ = banyan_tables.readme_table(readme, "bench-table", "Benchmarks")
    assert rows and rows[0][0] == "benchmark"
    scorecard, found = banyan_tables.readme_table(readme, "scorecard", "Reliability")
    if "## Reliability" in readme:
        assert found, "the README has a Reliability section but no table the page can show"
    assert all(len(row) == len(scorecard[0]) for row in scorecard)


# --- deployment files -------------------------------------------------------------------


def test_production_settings_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("BANYAN_")]:
        monkeypatch.delenv(key)
    settings = Settings.load(config=FILES / "config.toml")
    assert settings.host == "0.0.0.0" and settings.port == 5100
    assert settings.db == "/var/lib/banyan/banyan.db"
    assert settings.tls_cert is not None and settings.tls_key is not None
    assert settings.base_url.startswith("https://")


def _units(tmp_path: Path) -> list[Path]:
    venv_bin = Path(sys.executable).parent
    out = []
    for unit in sorted(FILES.glob("*.service")) + sorted(FILES.glob("*.timer")):
        text = unit.read_text().replace("/opt/banyan/bin", str(venv_bin))
        text = text.replace("/usr/local/sbin/banyan-backup", str(FILES / "banyan-backup"))
        copy = tmp_path / unit.name
        copy.write_text(text)
        out.append(copy)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_verify(tmp_path: Path) -> None:
    units = _units(tmp_path)
    assert {u.name for u in units} >= {"banyan-server.service", "banyan-worker.service"}
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # verify prints (and ignores) unknown keys and bad values: any output is a mistake.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "banyan" in line or "Unknown" in line or "Failed" in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_backup_script_parses() -> None:
    script = FILES / "banyan-backup"
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=30)
    assert "VACUUM INTO" in script.read_text()


def test_readme_deployment_section_shows_the_files() -> None:
    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", readme, flags=re.MULTILINE)
    assert headings[headings.index("Configuration") + 1] == "Deployment"
    section = banyan_tables.readme_section(readme, "Deployment")
    assert section is not None
    blocks = re.findall(r"^```\w*\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    for name in ("banyan-server.service", "banyan-worker.service", "config.toml"):
        assert (FILES / name).read_text() in blocks, f"README shows another {name}"
    assert "token create --role worker" in section and "--role provider" in section
    assert "docs/" in section
