"""The server's settings: one typed model (the paths it shares with clients
are ``banyan.settings``).

Precedence, highest first: command-line flags, ``BANYAN_*`` environment
variables, the settings file (TOML: ``--config PATH``, else ``$BANYAN_CONFIG``,
else ``<user config dir>/banyan/config.toml`` when it exists), the defaults
below. The README's configuration table is checked against this model by a test.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from banyan import constants as c
from banyan.errors import InvalidInput
from banyan.logs import LogFormat
from banyan.paths import data_dir, default_config_file


def _location(value: Any) -> Any:
    """A path (``--db PATH``) or a URL such as ``sqlite:///PATH``, kept as text."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


class Synchronous(StrEnum):
    OFF = "OFF"
    NORMAL = "NORMAL"
    FULL = "FULL"
    EXTRA = "EXTRA"


class Settings(BaseSettings):
    """Every server setting. Env name = ``BANYAN_`` + the upper-case field name."""

    model_config = SettingsConfigDict(
        env_prefix="BANYAN_", extra="forbid", validate_default=True, case_sensitive=False
    )

    host: str = Field(c.DEFAULT_HOST, description="address the server listens on")
    port: int = Field(c.DEFAULT_PORT, ge=0, le=65535, description="port the server listens on")
    db: Annotated[str, BeforeValidator(_location)] = Field(
        default_factory=lambda: str(data_dir() / "banyan.db"),
        description="the SQLite file (default `<user data dir>/banyan/banyan.db`; "
        "`sqlite:///PATH` too)",
    )
    synchronous: Synchronous = Field(
        Synchronous.FULL,
        description="SQLite durability; FULL: an acknowledged write survives power loss",
    )
    client_file: Path = Field(
        default_factory=lambda: data_dir() / c.CLIENT_FILE_NAME,
        description="where the server writes its URL and the local admin token (mode 0600)",
    )
    heartbeat_interval_s: float = Field(
        c.HEARTBEAT_INTERVAL_S, gt=0, description="told to each worker when it connects"
    )
    worker_timeout_s: float = Field(
        c.WORKER_TIMEOUT_S, gt=0, description="silence after which a worker is lost"
    )
    server_timeout_s: float = Field(
        c.SERVER_TIMEOUT_S,
        gt=0,
        description="worker side: unreachable server for this long → kill tasks, drop cache",
    )
    date_format: str = Field(c.DEFAULT_DATE_FORMAT, description="as Eve's DATE_FORMAT")
    default_time_limit_s: float | None = Field(
        None,
        gt=0,
        description="wall-time limit of a task submitted without `time_limit` (off unless set)",
    )
    default_max_results: int = Field(
        c.DEFAULT_MAX_RESULTS, ge=1, description="page size when `max_results` is absent"
    )
    max_results_limit: int = Field(
        c.MAX_RESULTS_LIMIT, ge=1, description="`max_results` is clamped to this"
    )
    max_prefetch: int = Field(
        8,
        ge=0,
        le=64,
        description="most attempts a worker may hold queued beyond what it runs "
        "(its `--prefetch`, capped); 0 turns prefetch off",
    )
    require_if_match: bool = Field(
        False, description="strict mode: PATCH without `If-Match` gets 428"
    )
    max_body_bytes: int = Field(
        c.MAX_BODY_BYTES, ge=1024, description="larger request bodies get 413"
    )
    max_bulk_items: int = Field(
        c.MAX_BULK_ITEMS, ge=1, description="most items in one bulk POST or PATCH"
    )
    idempotency_retention_s: float = Field(
        c.IDEMPOTENCY_RETENTION_S,
        gt=0,
        description="how long a POST /tasks answer is kept for a retry with the same "
        "Idempotency-Key (24 h)",
    )
    commit_batch_max_ops: int = Field(
        c.COMMIT_BATCH_MAX_OPS,
        ge=1,
        description="group commit: most write operations sharing one transaction",
    )
    pool_size: int = Field(
        10,
        ge=1,
        le=1000,
        description="PostgreSQL store: most connections this server opens to the database",
    )
    token_cache_s: float = Field(
        c.TOKEN_CACHE_S,
        ge=0,
        description="how long a checked token is trusted before it is looked up again",
    )
    revocation_check_s: float = Field(
        0.25,
        gt=0,
        le=1,
        description="how often the server looks for revoked tokens (also revoked by "
        "`banyan-server token revoke` in another process) to close their websockets",
    )
    event_retention: int = Field(
        1_000_000, ge=1000, description="events kept for `GET /events?since=` replays"
    )
    worker_retention_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="workers that left or were lost are forgotten this long after "
        "(`GET /workers`, `banyan workers --all`); task history keeps their names",
    )
    event_buffer: int = Field(
        100_000, ge=1000, description="recent events kept in memory for feed subscribers"
    )
    event_buffer_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="most bytes of encoded events kept in memory for feed subscribers "
        "(the ring holds at most `event_buffer` events and at most this many bytes; older "
        "events are read from the database)",
    )
    event_send_timeout_s: float = Field(
        10.0, gt=0, description="a feed subscriber that takes no data for this long is dropped"
    )
    keepalive_timeout_s: float = Field(
        75.0,
        gt=0,
        description="a connection idle between requests, or still sending a request's "
        "headers, is closed after this long",
    )
    body_timeout_s: float = Field(
        120.0, gt=0, description="a request body that takes longer than this to arrive gets 408"
    )
    hello_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a worker gateway connection that sends no hello frame within this long "
        "is closed",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate: serve HTTPS/WSS")
    tls_key: Path | None = Field(None, description="PEM private key for `tls_cert`")
    log_level: str = Field("INFO", description="Python logging level of the server")
    log_format: LogFormat = Field(
        "text", description="`text`, or `json`: one JSON object per line (`--log-format`)"
    )
    access_log: bool = Field(
        True, description="log every request (aiohttp's access log, one compact line each)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_config_file))
        return tuple(sources)

    @classmethod
    def load(cls, *, config: Path | None = None, **overrides: Any) -> Settings:
        """Settings from flags (``overrides``, ``None`` = not given), env, file, defaults."""
        global _config_file
        path = config if config is not None else default_config_file()
        if path is not None and not path.is_file():
            raise InvalidInput(f"settings file {path} does not exist", issues={"config": str(path)})
        _config_file = path
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        finally:
            _config_file = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


# The file for the `load` call under way; pydantic-settings asks for sources
# through a classmethod, so the path travels through this module variable.
_config_file: Path | None = None
