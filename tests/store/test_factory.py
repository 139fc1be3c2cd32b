"""``open_store``: the ``db`` setting picks the backend, in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from banyan.errors import InvalidInput
from server.cli import main
from server.settings import Settings
from server.stores import open_store, parse_location
from server.stores.postgres.store import PostgresStore
from server.stores.sqlite.store import SqliteStore


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("/var/lib/banyan/banyan.db", ("sqlite", "/var/lib/banyan/banyan.db")),
        ("relative.db", ("sqlite", "relative.db")),
        ("sqlite:///relative.db", ("sqlite", "relative.db")),
        ("sqlite:////var/b.db", ("sqlite", "/var/b.db")),
        ("SQLite:////var/b.db", ("sqlite", "/var/b.db")),
        ("postgresql://db.example/banyan", ("postgresql", "db.example/banyan")),
        (Path("/srv/b.db"), ("sqlite", "/srv/b.db")),
    ],
)
def test_locations(db: str | Path, expected: tuple[str, str]) -> None:
    assert parse_location(db) == expected


def test_a_path_or_a_sqlite_url_is_sqlite(tmp_path: Path) -> None:
    for db in (tmp_path / "a.db", f"sqlite:///{tmp_path / 'b.db'}"):
        store = open_store(Settings.load(db=db))
        assert isinstance(store, SqliteStore)
    assert Settings.load(db=tmp_path / "a.db").db == str(tmp_path / "a.db")


def test_a_postgresql_url_is_postgresql_and_others_are_refused_clearly() -> None:
    for db in ("postgresql://u@localhost/banyan", "postgres://u@localhost/banyan"):
        store = open_store(Settings.load(db=db, pool_size=3))
        assert isinstance(store, PostgresStore)
        assert store.db.dsn == "postgresql://u@localhost/banyan"
        assert store.db.pool_size == 3
    with pytest.raises(InvalidInput, match="unknown database scheme mysql://"):
        open_store(Settings.load(db="mysql://localhost/banyan"))


def test_the_server_says_so_in_one_line_at_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # were it to start after all, it would write here, not in the user's data dir
    monkeypatch.setenv("BANYAN_CLIENT_FILE", str(tmp_path / "client.json"))
    code = main(["--db", "mysql://localhost/banyan", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("banyan-server: db: unknown database scheme mysql://")
