"""Where Banyan keeps its files on this machine: the user data directory (the
database, the local client file) and the user config directory (the settings
file). Kept apart from ``banyan.settings`` so clients can find the client file
without loading pydantic-settings."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from banyan import constants as c


def data_dir() -> Path:
    """``<user data dir>/banyan``: the database and the local client file live here."""
    return Path(platformdirs.user_data_dir(c.APP_NAME, appauthor=False))


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(c.APP_NAME, appauthor=False))
