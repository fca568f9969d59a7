"""Declarative network files: `flow compose build FILE` creates or updates everything in them.

A file (JSON, or YAML when PyYAML is installed) lists objects by kind, with the same fields as
the `flow add` options:

    {"queues": [{"name": "q1"}],
     "processors": [{"name": "proc1", "gitrepo": "/srv/git/procs", "module": "pkg.mod", "concurrency": 1}],
     "sockets": [{"name": "proc1.f", "processor": "proc1", "queue": "q1", "function": "f"}],
     "plugs": [{"name": "p1", "source": "proc1.f", "target": "proc1.g", "argument": "x"}]}

Everything is applied in one transaction: a broken reference leaves the database unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from ..errors import ElasticCodeError, NotFound
from . import ops
from .kinds import KINDS

ORDER = ("queues", "processors", "sockets", "plugs")  # references point backwards in this order


def load(path: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ElasticCodeError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ElasticCodeError(f"{path} is YAML: install PyYAML or write it as JSON") from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise ElasticCodeError(f"{path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {exc}") from None
    if not isinstance(data, dict) or set(data) - set(ORDER):
        raise ElasticCodeError(f"{path} must be an object with the lists {', '.join(ORDER)}")
    return data


def build(session: Session, data: dict[str, list[dict[str, Any]]], repos: tuple[str, ...] = ()) -> list[str]:
    """Create or update every object; returns one line per change."""
    done = []
    for plural in ORDER:
        kind = KINDS[plural[:-1]]
        for item in data.get(plural) or []:
            if not isinstance(item, dict) or not item.get("name"):
                raise ElasticCodeError(f"every entry of {plural} needs a name")
            values = dict(item)
            name = values.pop("name")
            try:
                ops.find(session, kind, name)
                if values:
                    ops.update(session, kind.name, name, values, repos)
                done.append(f"updated {kind.name} {name}")
            except NotFound:
                ops.add(session, kind.name, {"name": name, **values}, repos)
                done.append(f"added {kind.name} {name}")
    return done


def remove(session: Session, data: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Delete what the file declares, dependents first."""
    done = []
    for plural in reversed(ORDER):
        kind = KINDS[plural[:-1]]
        for item in data.get(plural) or []:
            try:
                ops.delete(session, kind.name, item["name"])
                done.append(f"deleted {kind.name} {item['name']}")
            except NotFound:
                continue
    return done
