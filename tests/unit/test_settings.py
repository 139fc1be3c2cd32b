"""Settings: the README's table is the model's, and the precedence is
flags > BANYAN_* environment > settings file > defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from banyan.errors import InvalidInput
from server.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> dict[str, tuple[str, str, str]]:
    text = README.read_text()
    table = text.split("<!-- settings-table:start -->")[1].split("<!-- settings-table:end -->")[0]
    rows = {}
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2].strip("`"), cells[3])
    return rows


def test_readme_lists_every_setting_with_its_default() -> None:
    rows = readme_table()
    assert set(rows) == set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        env, default, meaning = rows[name]
        assert env == f"BANYAN_{name.upper()}"
        if field.default_factory is None:
            assert default == str(field.default), name
        assert field.description and meaning.startswith(field.description.split(" (")[0]), name


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("BANYAN_"):
            monkeypatch.delenv(key)
    settings = Settings.load()
    assert (settings.host, settings.port) == ("127.0.0.1", 5100)
    assert settings.synchronous.value == "FULL"
    db = Path(settings.db)  # a path or a URL such as sqlite:///PATH, kept as text
    assert db.name == "banyan.db" and db.parent.name == "banyan"
    assert settings.base_url == "http://127.0.0.1:5100"


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "banyan.toml"
    config.write_text('port = 6000\nhost = "127.0.0.2"\nworker_timeout_s = 7\n')
    monkeypatch.setenv("BANYAN_PORT", "6001")
    settings = Settings.load(config=config)
    assert settings.port == 6001  # env beats the file
    assert settings.host == "127.0.0.2" and settings.worker_timeout_s == 7  # file beats defaults
    assert Settings.load(config=config, port=6002).port == 6002  # flags beat env
    monkeypatch.setenv("BANYAN_CONFIG", str(config))
    monkeypatch.delenv("BANYAN_PORT")
    assert Settings.load().port == 6000  # $BANYAN_CONFIG names the file


def test_bad_settings_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        Settings.load(config=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    with pytest.raises(ValidationError, match="prot"):
        Settings.load(config=bad)
    monkeypatch.setenv("BANYAN_SYNCHRONOUS", "SOMETIMES")
    with pytest.raises(ValidationError, match="synchronous"):
        Settings.load()


def test_readme_default_for_paths_names_the_data_dir() -> None:
    rows = readme_table()
    assert re.search(r"<user data dir>/banyan/banyan\.db", rows["db"][1])
