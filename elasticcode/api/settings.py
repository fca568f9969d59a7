"""Where the API server connects: its own database login, and the broker and Redis of `flow`.

The database URL is the API's least-privilege login (a member of `elasticcode_api`: no
superuser, no BYPASSRLS, no table rights), from `ELASTICCODE_API_DB` or the ini file's
`[api] uri` (written by `flow up` for the embedded stack, with its password in the 0600 pgpass
file like every other role's). Never the user's or the admin's URL: the server must not act as
anyone before a token says who.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..errors import ElasticCodeError
from ..security import write_private_file

ENV_API_DB = "ELASTICCODE_API_DB"
SECTION, OPTION = "api", "uri"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class ApiSettings:
    db: str  # the API server's own login
    broker: str | None
    backend: str | None
    repositories: tuple[str, ...] = ()

    @property
    def flow(self) -> config.Settings:
        """The settings the client library (dispatcher) uses; its `db` is the API login."""
        return config.Settings(db=self.db, broker=self.broker, backend=self.backend, repositories=self.repositories)


def ini_api_db(ini: Path) -> str | None:
    if not ini.exists():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(ini, encoding="utf-8")
    except configparser.Error:
        return None
    return parser.get(SECTION, OPTION, fallback="").strip() or None


def save_api_db(ini: Path, url: str) -> None:
    """Add `[api] uri` to the ini file (kept 0600; other sections untouched)."""
    parser = configparser.ConfigParser(interpolation=None)
    if ini.exists():
        parser.read(ini, encoding="utf-8")
    if not parser.has_section(SECTION):
        parser.add_section(SECTION)
    parser.set(SECTION, OPTION, url)
    lines: list[str] = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {v}" for k, v in parser.items(section))
        lines.append("")
    write_private_file(ini, "\n".join(lines))


def load(ini: str | Path | None = None, db: str | None = None) -> ApiSettings:
    base = config.load(ini)
    url = db or os.environ.get(ENV_API_DB) or ini_api_db(base.ini_path)
    if not url:
        raise ElasticCodeError(
            f"no database login for the API server: `flow up` makes one for the local stack; elsewhere an admin creates "
            f"a login role that is a member of elasticcode_api and sets {ENV_API_DB} (or [api] uri in the ini file)")
    if not (base.backend or base.broker):
        raise ElasticCodeError("no broker configured for the API server: run `flow up` or set ELASTICCODE_BROKER")
    return ApiSettings(db=url, broker=base.broker, backend=base.backend, repositories=base.repositories)
