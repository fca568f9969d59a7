"""Idempotent writes for the object API: create the object, or update the fields that differ."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ..errors import NotFound
from .ops import add, find, update


def upsert(session: Session, kind_name: str, name: str, values: dict[str, Any], repos: tuple[str, ...] = (), *,
           create_queues: bool = False) -> Any:
    """Create the object, or update the fields that differ (None means: leave as is); idempotent."""
    values = {k: v for k, v in values.items() if v is not None}
    try:
        current = find(session, kind_name, name)
    except NotFound:
        return add(session, kind_name, {"name": name, **values}, repos, create_queues=create_queues)
    return update(session, kind_name, name, values, repos, create_queues=create_queues) if values else current


def as_dict(obj: Any) -> dict[str, Any]:
    """A row's columns as a dict (what the object API hands out)."""
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}
