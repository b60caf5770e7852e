"""Settings of the HTTP server: flags of `taskloom serve` over `TASKLOOM_*` variables.

The environment is read here, at the edge, and nowhere deeper.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import TaskloomError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY",
    "DEFAULT_PORT",
    "ServerSettings",
    "SettingsError",
    "is_loopback",
    "parse_size",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8321
#: The largest request body the server reads, in bytes (16 MiB).
DEFAULT_MAX_BODY = 16 * 1024 * 1024

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


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


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes from `1048576`, `512K`, `16M`, `16MiB` or `1G` (binary units, any case)."""
    found = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", text, flags=re.IGNORECASE)
    if found is None:
        raise SettingsError(f"{what}: expected bytes or a size like 16M or 512KiB, got {text!r}")
    size = int(found.group(1)) * _UNITS[found.group(2).lower()]
    if size < 1:
        raise SettingsError(f"{what}: expected at least 1 byte, got {text!r}")
    return size


def _host_names(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Where the server listens and which database it uses.

    `database_url` None is the embedded default (a SQLite file under the working folder).
    `port` 0 picks a free port. `access_log` prints one line per request on stdout.
    `venvs_dir` is where packages added through the API get their venvs (None: the
    default of `taskloom package add`). `allowed_hosts` are names the `Host` header may
    carry besides loopback ones (see `guard.HostPolicy`); `max_body` is the largest
    request body read, in bytes.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str | None = None
    access_log: bool = False
    venvs_dir: Path | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port: expected 0..65535, got {self.port}")
        if not self.host:
            raise SettingsError("host: expected an address or a name, got ''")
        if self.max_body < 1:
            raise SettingsError(f"max_body: expected at least 1 byte, got {self.max_body}")
        for name in self.allowed_hosts:
            if not re.fullmatch(r"(\*\.)?[A-Za-z0-9._:\[\]-]+", name):
                raise SettingsError(
                    f"allowed host {name!r}: expected a name or an address such as "
                    "taskloom.example.org or 192.168.1.20 (no scheme, no path)"
                )

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
        allowed_hosts: Sequence[str] | None = None,
        max_body: int | None = None,
    ) -> ServerSettings:
        """Given values first, then `TASKLOOM_HOST`, `TASKLOOM_PORT`,
        `TASKLOOM_DATABASE_URL`, `TASKLOOM_ACCESS_LOG`, `TASKLOOM_VENVS_DIR`,
        `TASKLOOM_ALLOWED_HOSTS` (comma-separated), `TASKLOOM_MAX_BODY`, then the
        defaults. Given allowed hosts add to those of the environment."""
        env = os.environ if environ is None else environ
        if port is None:
            raw = env.get("TASKLOOM_PORT", "").strip()
            try:
                port = int(raw) if raw else DEFAULT_PORT
            except ValueError:
                raise SettingsError(f"TASKLOOM_PORT: expected a port number, got {raw!r}") from None
        if access_log is None:
            access_log = env.get("TASKLOOM_ACCESS_LOG", "").strip().lower() in {"1", "true", "yes"}
        hosts = (*_host_names(env.get("TASKLOOM_ALLOWED_HOSTS", "")), *(allowed_hosts or ()))
        if max_body is None:
            raw = env.get("TASKLOOM_MAX_BODY", "").strip()
            max_body = parse_size(raw, what="TASKLOOM_MAX_BODY") if raw else DEFAULT_MAX_BODY
        return cls(
            host=host or env.get("TASKLOOM_HOST", "").strip() or DEFAULT_HOST,
            port=port,
            database_url=database_url or env.get("TASKLOOM_DATABASE_URL") or None,
            access_log=access_log,
            venvs_dir=Path(env["TASKLOOM_VENVS_DIR"]) if env.get("TASKLOOM_VENVS_DIR") else None,
            allowed_hosts=tuple(dict.fromkeys(hosts)),
            max_body=max_body,
        )
