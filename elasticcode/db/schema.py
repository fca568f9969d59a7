"""Schema lifecycle of the model database: init, migrate, drop, rebuild, dump, enrol users.

All schema changes go through alembic, from the first revision on; these functions run it
programmatically on the admin connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from psycopg2 import sql
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from ..errors import ElasticCodeError
from .engine import explain_operational_error, get_engine
from .model import OWNED_TABLES, RIGHTS, Base, Privilege, User, user_privileges

MIGRATIONS = Path(__file__).with_name("migrations")
Progress = Callable[[str], None]


def _alembic(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(url: str) -> str | None:
    with _connect(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _connect(url: str):
    try:
        return get_engine(url).connect()
    except OperationalError as exc:
        raise explain_operational_error(url, exc) from None


def migrate(url: str, progress: Progress = lambda _: None) -> str:
    """Upgrade the schema to the newest revision (creating it on an empty database)."""
    with _connect(url) as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
        try:
            with conn.begin():
                # Serialise concurrent migrations of the same database (two `flow up` at once).
                conn.execute(text("SELECT pg_advisory_xact_lock(7312001)"))
                command.upgrade(_alembic(conn), "head")
                # Users may ask which revision they talk to (`flow status`).
                conn.execute(text("GRANT SELECT ON alembic_version TO elasticcode_user, elasticcode_service"))
        except ProgrammingError as exc:
            raise ElasticCodeError(
                f"cannot migrate the model database ({str(exc.orig).strip().splitlines()[0]}): "
                "connect as the schema owner (set [database] admin_uri or ELASTICCODE_ADMIN_DB)"
            ) from None
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        progress(f"schema migrated from {before or 'empty'} to revision {after}")
    else:
        progress(f"schema is up to date (revision {after})")
    return after or ""


def init(url: str, progress: Progress = lambda _: None) -> None:
    """Create (or bring up to date) every table, with row-level security, and seed the rights."""
    migrate(url, progress)
    with get_engine(url).begin() as conn:
        known = set(conn.execute(select(Privilege.right)).scalars())
        missing = [r for r in RIGHTS if r not in known]
        if missing:
            conn.execute(insert(Privilege), [{"name": r, "right": r} for r in missing])
    progress(f"row-level security on {len(OWNED_TABLES)} tables; {len(RIGHTS)} rights defined")


# Tables the migrations make that no model maps (secrets only SQL functions read: call keys).
MIGRATION_ONLY_TABLES = ("call_key", "api_token")

DROP_FUNCTIONS = text(
    "DO $$ DECLARE f regprocedure; BEGIN "
    "FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE n.nspname = current_schema() AND p.proname LIKE 'elasticcode\\_%' LOOP "
    "EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', f); END LOOP; END $$"
)


def drop(url: str, progress: Progress = lambda _: None) -> None:
    """Drop every ElasticCode table (the group roles stay: other databases may use them)."""
    with _connect(url) as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(7312001)"))
        Base.metadata.drop_all(conn)
        for table in MIGRATION_ONLY_TABLES:
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}"'))  # a fixed name of ours, never input
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        conn.execute(DROP_FUNCTIONS)  # the rights functions and triggers' functions of the migrations
    progress(f"dropped {len(Base.metadata.tables)} tables")


def rebuild(url: str, progress: Progress = lambda _: None) -> None:
    drop(url, progress)
    init(url, progress)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def dump(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row the connected role may see, table by table."""
    out: dict[str, list[dict[str, Any]]] = {}
    with _connect(url) as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table)).mappings()
            out[table.name] = [{k: _jsonable(v) for k, v in row.items()} for row in rows]
    return out


def dump_json(url: str) -> str:
    return json.dumps(dump(url), indent=2, default=str)


def enrol(admin_url: str, role: str, email: str | None = None, rights: tuple[str, ...] = ("ALL",)) -> None:
    """Make an existing login role an ElasticCode user: group membership, user row, rights."""
    with get_engine(admin_url).begin() as conn:
        enrol_on(conn, role, email, rights)


def enrol_on(conn: Connection, role: str, email: str | None, rights: tuple[str, ...]) -> None:
    with conn.connection.dbapi_connection.cursor() as cur:
        cur.execute(sql.SQL("GRANT elasticcode_user TO {}").format(sql.Identifier(role)))
    user_id = conn.execute(select(User.id).where(User.name == role)).scalar()
    if user_id is None:
        user_id = conn.execute(
            insert(User).values(name=role, owner=role, email=email).returning(User.id)
        ).scalar_one()
    granted = set(
        conn.execute(
            select(Privilege.right).join(user_privileges).where(user_privileges.c.user_id == user_id)
        ).scalars()
    )
    for right in rights:
        if right not in granted:
            pid = conn.execute(select(Privilege.id).where(Privilege.right == right)).scalar_one()
            conn.execute(insert(user_privileges).values(user_id=user_id, privilege_id=pid))
