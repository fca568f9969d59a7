"""The embedded stack: one private PostgreSQL and one private Redis per ElasticCode home.

State lives in `home/stack.json` (layout, port, app role; nothing secret). Whether a service
runs is read from its own pid file (postmaster.pid, redis.pid), never from our state.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServiceUnavailable
from . import postgres, redis
from .files import VAR_ROOT, make_dir
from .state import load_state, locked, save_state


@dataclass(frozen=True)
class StackUrls:
    db: str  # app role: what the application connects as
    admin_db: str  # elasticcode_admin: owns the schema, runs migrations
    broker: str
    backend: str
    app_role: str
    service_db: str = ""  # elasticcode_agent: what agents connect as (made by `ensure_service_role`)


@dataclass(frozen=True)
class ServiceStatus:
    name: str  # "postgres" | "redis"
    running: bool
    pid: int | None
    address: str
    detail: str


def _quiet(msg: str) -> None:
    pass


def _home(home: Path) -> Path:
    return Path(home).expanduser().absolute()


def _urls(home: Path, state: dict) -> StackUrls:
    port, role = state["postgres"]["port"], state["app_role"]
    broker = redis.url(home)
    return StackUrls(db=postgres.url(home, port, role), admin_db=postgres.url(home, port, postgres.ADMIN_ROLE),
                     broker=broker, backend=broker, app_role=role,
                     service_db=postgres.url(home, port, postgres.SERVICE_ROLE))


def up(home: Path, progress: Callable[[str], None] = _quiet) -> StackUrls:
    """Start whatever is not running (initialising on first use); idempotent."""
    home = _home(home)
    redis.check_socket_path(home)  # before starting anything, so a too-long home fails cleanly
    try:
        make_dir(home, 0o700)
    except OSError as exc:
        raise ServiceUnavailable(f"cannot use {home} as ELASTICCODE_HOME ({exc.strerror}: {exc.filename}): "
                                 "set ELASTICCODE_HOME to a folder you may create and write") from None
    with locked(home):
        state = load_state(home) or {}
        state.setdefault("app_role", postgres.app_role_for_login())
        pg = postgres.up(home, state.get("postgres"), state["app_role"], progress)
        if pg != state.get("postgres"):
            state["postgres"] = pg
            save_state(home, state)  # before Redis: a new port or layout must not be forgotten
        rd = redis.up(home, progress)
        if rd != state.get("redis"):
            state["redis"] = rd
            save_state(home, state)
        return _urls(home, state)


def ensure_service_role(home: Path) -> str:
    """Create (or repair) the agents' login role on the running stack; returns its URL."""
    home = _home(home)
    with locked(home):
        state, port = _running(home)
        postgres.ensure_service_role(home, port)
        return _urls(home, state).service_db


def ensure_api_role(home: Path) -> str:
    """Create (or repair) the API server's login role on the running stack; returns its URL."""
    home = _home(home)
    with locked(home):
        _, port = _running(home)
        return postgres.url(home, port, postgres.ensure_api_role(home, port))


def _running(home: Path) -> tuple[dict, int]:
    """The stack's state and its PostgreSQL's port (under the home's lock), or why there is none."""
    state = load_state(home) or {}
    pg = state.get("postgres")
    if not pg or "app_role" not in state:
        raise ServiceUnavailable("the local stack is not set up: run `flow up`")
    return state, postgres.running_port(pg)


def down(home: Path, progress: Callable[[str], None] = _quiet) -> list[str]:
    """Stop both services, keeping their data; names of those that were running."""
    home = _home(home)
    if not home.is_dir():
        return []
    stopped, errors = [], []
    with locked(home):
        pg = _pg_state(home, load_state(home) or {})
        for name, stop in (("redis", lambda: redis.down(home, progress)),
                           ("postgres", lambda: postgres.down(pg, progress))):
            try:
                if stop():
                    stopped.append(name)
            except Exception as exc:  # still try the other one; report the first failure after
                errors.append(exc)
    if errors:
        raise errors[0]
    return stopped


def _pg_state(home: Path, state: dict) -> dict:
    # Without saved state (deleted, or a first start that failed half-way) the layout still
    # follows from home, so a server we started can always be found and stopped.
    return state.get("postgres") or postgres.choose_layout(home)


def status(home: Path) -> list[ServiceStatus]:
    home = _home(home)
    state = (load_state(home) if home.is_dir() else None) or {}
    pg = _pg_state(home, state)
    if state.get("postgres") or Path(pg["data"], "PG_VERSION").exists():
        proc = postgres.postmaster(pg)
        port = postgres.running_port(pg) if proc else pg.get("port", "?")
        detail = f"data {pg['data']}, log {pg['log']}" if proc else f"stopped (data {pg['data']})"
        pg_status = ServiceStatus("postgres", bool(proc), proc.pid if proc else None, f"{postgres.HOST}:{port}", detail)
    else:
        pg_status = ServiceStatus("postgres", False, None, "", "not initialised (run flow up)")
    lay = redis.layout(home)
    proc = redis.server_process(home)
    if proc:
        detail = f"log {lay['log']}"
    else:
        detail = f"stopped (data {lay['dir']})" if lay["conf"].exists() else "not initialised (run flow up)"
    rd_status = ServiceStatus("redis", bool(proc), proc.pid if proc else None, str(lay["socket"]), detail)
    return [pg_status, rd_status]


def urls(home: Path) -> StackUrls | None:
    """The stack's URLs from saved state (valid whether or not it is running); None if never set up."""
    home = _home(home)
    state = load_state(home) if home.is_dir() else None
    if not state or "postgres" not in state or "app_role" not in state:
        return None
    return _urls(home, state)


def purge(home: Path, progress: Callable[[str], None] = _quiet) -> None:
    """Stop the stack and delete its data and state (as root the database may live outside home,
    in /var/lib/elasticcode: a temporary home alone would leave it behind)."""
    home = _home(home)
    down(home, progress)
    base = Path(_pg_state(home, (load_state(home) if home.is_dir() else None) or {})["base"])
    if base.parent in (home, VAR_ROOT):  # only folders this module creates
        shutil.rmtree(base, ignore_errors=True)
    for name in ("redis", "run"):
        shutil.rmtree(home / name, ignore_errors=True)
    for name in ("pgpass", "stack.json", "stack.lock"):
        (home / name).unlink(missing_ok=True)
