"""Where Banyan keeps its files on this machine, shared by the server and its
clients: the user data directory (the database, the local client file) and
the settings file. Plain paths, no pydantic-settings, so clients find the
client file cheaply; the server's settings model is ``server.settings``."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from banyan import constants as c


def data_dir() -> Path:
    """``<user data dir>/banyan``: the database and the local client file live here."""
    return Path(platformdirs.user_data_dir(c.APP_NAME, appauthor=False))


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(c.APP_NAME, appauthor=False))


def default_config_file() -> Path | None:
    """The settings file to read when no ``--config`` flag is given."""
    env = os.environ.get("BANYAN_CONFIG")
    if env:
        return Path(env)
    candidate = config_dir() / "config.toml"
    return candidate if candidate.exists() else None
