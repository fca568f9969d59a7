"""Tokens to roles, and transactions run as a role.

Each request is one transaction on the API server's own login: the token's role is looked up and
switched to in one statement (`set_config('role', ..., true)`, which is `SET LOCAL ROLE` with the
name bound as a parameter, never formatted into SQL), then the request's queries run as that role
and the switch ends with the transaction. PostgreSQL checks that the login may switch to the role
(the membership `elasticcode_issue_token` gives `elasticcode_api`), so a role nobody issued a
token for is out of reach even to a bug here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from ..catalog.tokens import token_hash
from ..db.engine import explain_operational_error, get_engine
from ..errors import ElasticCodeError

AUTHENTICATE = text("SELECT r, set_config('role', r, true) FROM (SELECT elasticcode_token_role(:h) AS r) t "
                    "WHERE r IS NOT NULL")
BECOME = text("SELECT set_config('role', :r, true)")
SELF_CHECK = text("SELECT rolsuper, rolbypassrls, pg_has_role(current_user, 'elasticcode_api', 'MEMBER') "
                  "FROM pg_roles WHERE rolname = current_user")


# A server's pool: every request thread may hold a connection at once, and none is opened and
# closed per request (the library's engines keep 5 and close the overflow after each use, which
# under 50 concurrent clients meant a new PostgreSQL backend for most requests).
POOL_SIZE, MAX_OVERFLOW = 20, 20
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            template = get_engine(url)  # the library's checks of the URL and its connect arguments
            engine = _engines[url] = create_engine(template.url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW,
                                                   pool_pre_ping=True, pool_timeout=30,
                                                   connect_args={"connect_timeout": 5, "keepalives": 1,
                                                                 "keepalives_idle": 10, "keepalives_interval": 3,
                                                                 "keepalives_count": 3})
        return engine


@contextlib.contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """`elasticcode.db.engine.session_scope` on the server's pool: one transaction, errors as one line."""
    factory = sessionmaker(engine_for(url), expire_on_commit=False)
    try:
        with factory.begin() as session:
            yield session
    except OperationalError as exc:
        raise explain_operational_error(url, exc) from None
    except ProgrammingError as exc:
        line = str(exc.orig).strip().splitlines()[0]
        if "does not exist" in line and "function" in line:
            raise ElasticCodeError("the model database predates the API: upgrade it with `flow db init`") from None
        if "permission denied" in line:
            raise ElasticCodeError(f"permission denied in the model database ({line}): ask an admin for the right") from None
        raise


class Unauthorized(ElasticCodeError):
    """No token, or one that is unknown, revoked, or of a user who no longer exists."""


def check_login(url: str) -> None:
    """Refuse to serve from a login that could act beyond row-level security, or cannot switch roles."""
    with session_scope(url) as session:
        row = session.execute(SELF_CHECK).first()
    if row is None or row[0] or row[1]:
        raise ElasticCodeError("the API server's database login is a superuser or bypasses row-level security: "
                               "give it a plain login role that is a member of elasticcode_api")
    if not row[2]:
        raise ElasticCodeError("the API server's database login is not a member of elasticcode_api: "
                               "an admin runs GRANT elasticcode_api TO <login> (and `flow db init` for the role)")


@contextlib.contextmanager
def as_token(url: str, token: str | None) -> Iterator[tuple[str, Session]]:
    """A transaction running as the role of `token`: (role, session)."""
    if not token:
        raise Unauthorized("no bearer token: send `Authorization: Bearer <token>` (get one with `flow user token`)")
    with session_scope(url) as session:
        row = session.execute(AUTHENTICATE, {"h": token_hash(token)}).first()
        if row is None:
            raise Unauthorized("the bearer token is unknown or revoked: get a new one with `flow user token`")
        yield row[0], session


@contextlib.contextmanager
def as_role(url: str, role: str) -> Iterator[Session]:
    """A transaction running as `role` (already authenticated by its token)."""
    with session_scope(url) as session:
        session.execute(BECOME, {"r": role})
        yield session


def token_role(url: str, token: str | None) -> str:
    """The role a token acts as (one short transaction), or Unauthorized."""
    with as_token(url, token) as (role, _session):
        return role
