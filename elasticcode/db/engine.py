"""Engines and sessions for the model database, with connection failures turned into one clear line."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ElasticCodeError, ServiceUnavailable
from ..security import redact_url

_engines: dict[tuple[str, float | None], Engine] = {}
_lock = threading.Lock()
# TCP keepalives: a connection whose peer vanished (a cut link) fails in about 20 s, not hours.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3}


def get_engine(url: str, idle_transaction_timeout: float | None = None) -> Engine:
    """One pooled engine per URL per process (workers and agents reuse it).

    With `idle_transaction_timeout` (seconds) the server ends a session that sits idle inside a
    transaction for longer. The agent's heartbeat and recorder use it: cut off from the network
    in the middle of a transaction, they would otherwise keep their row locks (the agent's row,
    calls being recorded) until the server notices the dead peer, which behind a proxy or NAT is
    never, and the live agents could neither mark that node down nor record its calls."""
    key = (url, idle_transaction_timeout)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            if not url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
                raise ElasticCodeError(
                    f"database URL {redact_url(url)!r} is not PostgreSQL: use postgresql+psycopg2://user@host:port/db"
                )
            # psycopg2 is the driver we ship: SQLAlchemy 2.1 would pick psycopg 3 for a bare scheme.
            for scheme in ("postgres://", "postgresql://"):
                if url.startswith(scheme):
                    url = "postgresql+psycopg2://" + url[len(scheme):]
            try:
                connect_args: dict[str, object] = {"connect_timeout": 5, **_KEEPALIVES}
                if idle_transaction_timeout is not None:
                    connect_args["options"] = f"-c idle_in_transaction_session_timeout={int(idle_transaction_timeout * 1000)}"
                engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
            except (ValueError, ArgumentError) as exc:
                raise ElasticCodeError(f"database URL {redact_url(url)!r} is not valid ({exc}): "
                                       "use postgresql+psycopg2://user@host:port/db") from None
            _engines[key] = engine
        return engine


def dispose_all() -> None:
    """Close pooled connections (after fork, or before dropping a database)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def explain_operational_error(url: str, exc: Exception) -> ServiceUnavailable:
    """Turn a driver error into the one line a user needs."""
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return ServiceUnavailable(
        f"cannot reach the model database at {redact_url(url)} ({detail}): start it with `flow up` or check `flow --config`"
    )


@contextlib.contextmanager
def session_scope(url: str, idle_transaction_timeout: float | None = None) -> Iterator[Session]:
    """A transaction: committed on success, rolled back (nothing partial written) on any error.
    For `idle_transaction_timeout` see `get_engine`."""
    engine = get_engine(url, idle_transaction_timeout)
    factory = sessionmaker(engine, expire_on_commit=False)
    try:
        with factory.begin() as session:
            yield session
    except OperationalError as exc:
        raise explain_operational_error(url, exc) from None
    except ProgrammingError as exc:
        if "does not exist" in str(exc.orig) and "relation" in str(exc.orig):
            raise ElasticCodeError("the model database has no ElasticCode tables: run `flow db init`") from None
        if "permission denied" in str(exc.orig):
            raise ElasticCodeError(
                f"permission denied in the model database ({str(exc.orig).strip().splitlines()[0]}): ask an admin for the right"
            ) from None
        raise


__all__ = ["get_engine", "session_scope", "dispose_all", "explain_operational_error"]
