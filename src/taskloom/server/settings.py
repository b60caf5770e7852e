"""Settings of the HTTP server: flags of `taskloom serve` over `TASKLOOM_*` variables.

The environment is read here, at the edge, and nowhere deeper.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import TaskloomError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServerSettings", "SettingsError", "is_loopback"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8321


class SettingsError(TaskloomError, ValueError):
    """A server setting is invalid."""


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Where the server listens and which database it uses.

    `database_url` None is the embedded default (a SQLite file under the working folder).
    `port` 0 picks a free port. `access_log` prints one line per request on stderr.
    `venvs_dir` is where packages added through the API get their venvs (None: the
    default of `taskloom package add`).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str | None = None
    access_log: bool = False
    venvs_dir: Path | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port: expected 0..65535, got {self.port}")
        if not self.host:
            raise SettingsError("host: expected an address or a name, got ''")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        database_url: str | None = None,
        access_log: bool | None = None,
    ) -> ServerSettings:
        """Given values first, then `TASKLOOM_HOST`, `TASKLOOM_PORT`,
        `TASKLOOM_DATABASE_URL`, `TASKLOOM_ACCESS_LOG`, `TASKLOOM_VENVS_DIR`, then the
        defaults."""
        env = os.environ if environ is None else environ
        if port is None:
            raw = env.get("TASKLOOM_PORT", "").strip()
            try:
                port = int(raw) if raw else DEFAULT_PORT
            except ValueError:
                raise SettingsError(f"TASKLOOM_PORT: expected a port number, got {raw!r}") from None
        if access_log is None:
            access_log = env.get("TASKLOOM_ACCESS_LOG", "").strip().lower() in {"1", "true", "yes"}
        return cls(
            host=host or env.get("TASKLOOM_HOST", "").strip() or DEFAULT_HOST,
            port=port,
            database_url=database_url or env.get("TASKLOOM_DATABASE_URL") or None,
            access_log=access_log,
            venvs_dir=Path(env["TASKLOOM_VENVS_DIR"]) if env.get("TASKLOOM_VENVS_DIR") else None,
        )
