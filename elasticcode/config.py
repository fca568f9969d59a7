"""Where ElasticCode finds its services: CLI options, then environment, then the ini file.

The ini file lives at `$ELASTICCODE_HOME/elasticcode.ini` (default `~/.elasticcode/`), is
created owner-only (0600) and holds URLs only. Database URLs never carry a password: a password
typed into `flow --config` is moved into the libpq password file beside it.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ElasticCodeError
from .security import pgpass_line, write_private_file

ENV_DB = "ELASTICCODE_DB"
ENV_ADMIN_DB = "ELASTICCODE_ADMIN_DB"
ENV_SERVICE_DB = "ELASTICCODE_SERVICE_DB"
ENV_BROKER = "ELASTICCODE_BROKER"
ENV_BACKEND = "ELASTICCODE_BACKEND"
ENV_HOME = "ELASTICCODE_HOME"
ENV_INI = "ELASTICCODE_INI"

# ini section/key for each setting
_INI_KEYS = {
    "db": ("database", "uri"),
    "admin_db": ("database", "admin_uri"),
    "service_db": ("database", "service_uri"),
    "broker": ("broker", "uri"),
    "backend": ("backend", "uri"),
    "repositories": ("security", "repositories"),
    "previous_db": ("database", "previous_uri"),
}


def home_dir() -> Path:
    """The state directory: `$ELASTICCODE_HOME` or `~/.elasticcode`."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".elasticcode").expanduser().absolute()


def default_ini() -> Path:
    return Path(os.environ.get(ENV_INI) or home_dir() / "elasticcode.ini").expanduser().absolute()


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one CLI invocation or client session."""

    db: str | None = None
    admin_db: str | None = None
    service_db: str | None = None
    broker: str | None = None
    backend: str | None = None
    repositories: tuple[str, ...] = ()
    ini_path: Path = field(default_factory=default_ini)
    home: Path = field(default_factory=home_dir)

    @property
    def admin_url(self) -> str | None:
        """Migrations and role management use the admin URL when one is configured."""
        return self.admin_db or self.db

    @property
    def service_url(self) -> str | None:
        """Agents and recorders connect as the service role when one is configured (never as the admin)."""
        return self.service_db or self.db

    def require_db(self) -> str:
        if not self.db:
            raise ElasticCodeError(
                "no database configured: run `flow up` for a local stack, or `flow --config`, "
                f"or set {ENV_DB}"
            )
        return self.db

    def require_broker(self) -> str:
        if not self.broker:
            raise ElasticCodeError(
                "no message broker configured: run `flow up` for a local stack, or `flow --config`, "
                f"or set {ENV_BROKER}"
            )
        return self.broker


def _read_ini(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ElasticCodeError(f"configuration file {path} is malformed ({exc.__class__.__name__}): fix or delete it") from None
    values = {}
    for key, (section, option) in _INI_KEYS.items():
        if parser.has_option(section, option):
            values[key] = parser.get(section, option).strip()
    return values


def load(
    ini: str | Path | None = None,
    db: str | None = None,
    broker: str | None = None,
    backend: str | None = None,
) -> Settings:
    """Resolve settings: explicit arguments, then environment variables, then the ini file."""
    ini_path = Path(ini).expanduser().absolute() if ini else default_ini()
    if ini and not ini_path.exists():
        raise ElasticCodeError(f"configuration file {ini_path} does not exist: create it with `flow --config -i {ini}`")
    from_file = _read_ini(ini_path)
    pick = lambda arg, env, key: arg or os.environ.get(env) or from_file.get(key) or None  # noqa: E731
    repos = tuple(r.strip() for r in from_file.get("repositories", "").split(",") if r.strip())
    return Settings(
        db=pick(db, ENV_DB, "db"),
        admin_db=pick(None, ENV_ADMIN_DB, "admin_db"),
        service_db=pick(None, ENV_SERVICE_DB, "service_db"),
        broker=pick(broker, ENV_BROKER, "broker"),
        backend=pick(backend, ENV_BACKEND, "backend") or pick(broker, ENV_BROKER, "broker"),
        repositories=repos,
        ini_path=ini_path,
    )


def save(path: Path, **values: str | None) -> Path:
    """Merge `values` (db, admin_db, service_db, broker, backend, ...) into the ini file at `path` (kept 0600).

    An empty string removes the key."""
    parser = configparser.ConfigParser(interpolation=None)
    if path.exists():
        parser.read(path, encoding="utf-8")
    for key, value in values.items():
        if value is None:
            continue
        section, option = _INI_KEYS[key]
        if value == "":
            if parser.has_section(section):
                parser.remove_option(section, option)
            continue
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, option, value)
    lines: list[str] = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {v}" for k, v in parser.items(section))
        lines.append("")
    write_private_file(path, "\n".join(lines))
    return path


def strip_db_password(url: str, passfile: Path) -> str:
    """Move a password out of a PostgreSQL URL into the libpq password file `passfile`.

    Returns the URL without the password and with `passfile=` so libpq finds it again.
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or "localhost"
    port = str(parts.port or 5432)
    existing = passfile.read_text(encoding="utf-8") if passfile.exists() else ""
    write_private_file(passfile, existing + pgpass_line(host, parts.username or "", parts.password, port=port))
    netloc = (parts.username or "") + "@" + host + (f":{parts.port}" if parts.port else "")
    query = dict(parse_qsl(parts.query))
    query["passfile"] = str(passfile)
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


def previous_db(path: Path) -> str | None:
    return _read_ini(path).get("previous_db")


def with_overrides(settings: Settings, **values: str | None) -> Settings:
    return replace(settings, **{k: v for k, v in values.items() if v is not None})
