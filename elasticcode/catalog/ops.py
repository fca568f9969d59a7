"""Add, update, delete, find and list network objects, with integrity checked before writing.

Every function works inside the caller's session (one transaction): a failed check raises
ElasticCodeError and the caller's rollback leaves nothing partial behind.
"""

from __future__ import annotations

import keyword
import re
import shlex
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import model as m
from ..errors import AlreadyExists, ElasticCodeError, NotFound
from ..runtime import naming
from . import rights
from .kinds import KINDS, Kind
from .repos import check_gitrepo

DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def kind_of(name: str) -> Kind:
    kind = KINDS.get(name) or next((k for k in KINDS.values() if k.plural == name), None)
    if kind is None:
        raise ElasticCodeError(f"unknown object kind {name!r}: use one of {', '.join(KINDS)}")
    return kind


def find(session: Session, kind: Kind | str, name: str, *, lock: bool = False) -> Any:
    """The object of that kind and name; the caller's own row wins over another owner's."""
    kind = kind_of(kind) if isinstance(kind, str) else kind
    model = kind.model
    query = (
        select(model)
        .where(model.name == name)
        .order_by((model.owner == func.current_user()).desc())
        .limit(1)
    )
    if lock:
        query = query.with_for_update()
    obj = session.execute(query).scalar()
    if obj is None:
        raise NotFound(f"{kind.name} {name!r} does not exist: list them with `flow ls {kind.plural}`")
    return obj


def _exists(session: Session, kind: Kind, name: str) -> bool:
    model = kind.model
    return session.execute(
        select(model.id).where(model.name == name, model.owner == func.current_user())
    ).first() is not None


def _identifier(value: str, what: str) -> str:
    if not value or not value.isidentifier() or keyword.iskeyword(value):
        raise ElasticCodeError(f"{what} {value!r} is not a Python identifier: give the function's plain name")
    return value


def _positive(value: int | None, what: str) -> None:
    if value is not None and value < 1:
        raise ElasticCodeError(f"{what} must be at least 1, got {value}")


# -- per-kind preparation: turn CLI/API values into model attributes -------------------------


def _prepare_processor(session: Session, values: dict, settings_repos: tuple[str, ...], obj: Any, create_queues: bool = False) -> dict:
    if "gitrepo" in values:
        values["gitrepo"] = check_gitrepo(values["gitrepo"], settings_repos)
    if "module" in values and not DOTTED.match(values["module"] or ""):
        raise ElasticCodeError(f"module {values['module']!r} is not a dotted Python module path: e.g. pkg.module")
    _positive(values.get("concurrency"), "concurrency")
    if "hostname" in values:
        values["hostname"] = naming.pinned_node(values["hostname"])
    low = values.get("min_concurrency")
    high = values.get("concurrency", obj.concurrency if obj is not None else None)
    if low is not None and (low < 0 or (high is not None and low > high)):
        raise ElasticCodeError(f"--min {low} must be between 0 and the processor's -c/--concurrency ({high})")
    if "commit" in values and values["commit"] is not None and not re.fullmatch(r"[0-9a-fA-F]{4,64}", values["commit"]):
        raise ElasticCodeError(f"commit {values['commit']!r} is not a git commit id: give a hex sha (use --tag for tags)")
    return values


def _queue(session: Session, name: str, create: bool) -> m.Queue:
    """The queue of that name; a missing one is made only when the caller asked (the Python API does)."""
    try:
        return find(session, KINDS["queue"], name)
    except NotFound:
        if not create:
            raise NotFound(f"queue {name!r} does not exist: add it first with `flow add queue -n {name}`") from None
        rights.require(session, "ADD_QUEUE")
        queue = m.Queue(name=name)
        session.add(queue)
        session.flush()
        return queue


def _prepare_socket(session: Session, values: dict, _repos: tuple[str, ...], obj: Any, create_queues: bool = False) -> dict:
    processor = find(session, KINDS["processor"], values.pop("processor")) if "processor" in values else (obj and obj.processor)
    function = _identifier(values.pop("function"), "function") if "function" in values else None
    if "queue" in values:
        values["queue_id"] = _queue(session, values.pop("queue"), create=create_queues).id
    if function is not None:
        task_name = f"{processor.name}.{function}"
        task = session.execute(
            select(m.Task).where(m.Task.name == task_name, m.Task.owner == func.current_user())
        ).scalar()
        if task is None:
            task = m.Task(name=task_name, module=processor.module, function=function, processor_id=processor.id)
            session.add(task)
            session.flush()
        values["task_id"] = task.id
    if processor is not None:
        values["processor_id"] = processor.id
    _positive(values.get("interval"), "interval")
    return values


def _reachable(session: Session, start: str, goal: str, ignore: str | None) -> bool:
    """Is `goal` reachable from `start` along existing plugs (ignoring plug `ignore`)?"""
    edges: dict[str, list[str]] = {}
    for plug_id, source, target in session.execute(select(m.Plug.id, m.Plug.source_id, m.Plug.target_id)):
        if plug_id != ignore:
            edges.setdefault(source, []).append(target)
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return False


def _prepare_plug(session: Session, values: dict, _repos: tuple[str, ...], obj: Any, create_queues: bool = False) -> dict:
    source = find(session, KINDS["socket"], values.pop("source")) if "source" in values else (obj and obj.source)
    target = find(session, KINDS["socket"], values.pop("target")) if "target" in values else (obj and obj.target)
    if "queue" in values:
        queue = values.pop("queue")
        values["queue_id"] = _queue(session, queue, create=create_queues).id if queue else None
    if values.get("argument"):
        _identifier(values["argument"], "argument")
    _positive(values.get("max_queued"), "--max-queued")
    _positive(values.get("max_bytes"), "--max-bytes")
    if source.id == target.id:
        raise ElasticCodeError(f"plug would connect socket {source.name!r} to itself: plugs may not form cycles")
    # Serialise topology changes so two concurrent adds cannot close a cycle together.
    session.execute(text("SELECT pg_advisory_xact_lock(7312002)"))
    if _reachable(session, target.id, source.id, obj.id if obj is not None else None):
        raise ElasticCodeError(
            f"plug from {source.name!r} to {target.name!r} would make a cycle ({target.name!r} already leads to {source.name!r}): "
            "remove a plug of that path first"
        )
    values["source_id"], values["target_id"] = source.id, target.id
    return values


def _prepare_node(session: Session, values: dict, _repos: tuple[str, ...], obj: Any, create_queues: bool = False) -> dict:
    if obj is None and not values.get("hostname"):
        values["hostname"] = values["name"]
    if "scheduler" in values:
        scheduler = values.pop("scheduler")
        values["scheduler_id"] = find(session, KINDS["scheduler"], scheduler).id if scheduler else None
    return values


def _prepare_agent(session: Session, values: dict, _repos: tuple[str, ...], obj: Any, create_queues: bool = False) -> dict:
    node_name = values.pop("node", None) or (None if obj is not None else values["name"])
    if node_name:
        node = find(session, KINDS["node"], node_name)
        values["node_id"] = node.id
        if not values.get("hostname"):
            values["hostname"] = node.hostname
    return values


PREPARE = {
    "processor": _prepare_processor,
    "socket": _prepare_socket,
    "plug": _prepare_plug,
    "node": _prepare_node,
    "agent": _prepare_agent,
}
# Kinds whose add/update need role administration (see catalog.users).
ADMIN_KINDS = ("user", "privilege")


def _clean(kind: Kind, values: dict[str, Any]) -> dict[str, Any]:
    known = {f.attr for f in kind.fields}
    unknown = set(values) - known
    if unknown:
        raise ElasticCodeError(f"{kind.name} has no option {sorted(unknown)[0]!r}: see `flow add {kind.name} --help`")
    return dict(values)


def _flush(session: Session, kind: Kind, name: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        if "unique" in str(exc.orig).lower() or "duplicate" in str(exc.orig).lower():
            raise AlreadyExists(f"{kind.name} {name!r} already exists: choose another name or `flow update {kind.name}`") from None
        detail = str(exc.orig).strip().splitlines()[0]
        raise ElasticCodeError(f"{kind.name} {name!r} breaks an integrity rule ({detail})") from None


def add(session: Session, kind_name: str, values: dict[str, Any], repos: tuple[str, ...] = (), *,
        create_queues: bool = False) -> Any:
    """Create one object; raises before writing anything if a reference or rule is broken."""
    kind = kind_of(kind_name)
    if kind.name in ADMIN_KINDS or kind.name == "worker":
        raise ElasticCodeError(f"{kind.name}s are not added here: use `flow add {kind.name}`")
    values = _clean(kind, values)
    for f in kind.fields:
        if f.required and values.get(f.attr) in (None, ""):
            raise ElasticCodeError(f"{kind.name} needs {f.flags[-1] if f.flags[-1].startswith('--') else f.flags[0]}: see `flow add {kind.name} --help`")
        if values.get(f.attr) is None and f.default is not None:
            values[f.attr] = f.default
    rights.require(session, f"ADD_{kind.right}")
    name = values["name"]
    if _exists(session, kind, name):
        raise AlreadyExists(f"{kind.name} {name!r} already exists: choose another name or `flow update {kind.name} -n {name}`")
    values = {k: v for k, v in values.items() if v is not None}
    prepare = PREPARE.get(kind.name)
    if prepare:
        values = prepare(session, values, repos, None, create_queues=create_queues)
    obj = kind.model(**values)
    session.add(obj)
    _flush(session, kind, name)
    return obj


def _current(obj: Any, attr: str) -> Any:
    """The value of `attr` as the user gives it: names for references, the plain column otherwise."""
    if attr in ("processor", "queue", "source", "target"):
        ref = getattr(obj, attr, None)
        return ref.name if ref is not None else None
    if attr == "function" and isinstance(obj, m.Socket):
        return obj.task.function if obj.task is not None else None
    return getattr(obj, attr, None)


def _given(kind: Kind, attr: str, value: Any, repos: tuple[str, ...]) -> Any:
    """A given value normalised the way `add` would store it (so `-h localhost` equals this node)."""
    if kind.name == "processor" and attr == "gitrepo":
        return check_gitrepo(value, repos)
    if kind.name == "processor" and attr == "hostname":
        return naming.pinned_node(value)
    return value


def differences(kind: Kind, obj: Any, values: dict[str, Any], repos: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """The given fields (not None) whose value differs from the object's: {attr: (current, given)}."""
    out = {}
    for attr, value in values.items():
        if value is None or attr == "name":
            continue
        current, given = _current(obj, attr), _given(kind, attr, value, repos)
        if isinstance(given, str) and isinstance(current, str) and isinstance(_field(kind, attr).type, tuple):
            if current.lower() == given.lower():  # click choices are case-insensitive
                continue
        if current != given:
            out[attr] = (current, given)
    return out


def _field(kind: Kind, attr: str):
    return next(f for f in kind.fields if f.attr == attr)


def _option_text(kind: Kind, attr: str, value: Any) -> str:
    """The CLI option that sets `attr` to `value` (`--transient` for durable False)."""
    f = _field(kind, attr)
    flag = next((flag for flag in f.flags if flag.startswith("--")), f.flags[0])
    if f.type is bool:
        on, _, off = flag.partition("/")
        return on if value else (off or f"--no-{on[2:]}")
    return f"{flag} {shlex.quote(str(value))}"


def ensure(session: Session, kind_name: str, values: dict[str, Any], repos: tuple[str, ...] = ()) -> tuple[Any, bool]:
    """`add`, made re-runnable: an object of that name that already matches every given field is
    left as is and returned with False; one that differs is refused with the update to run."""
    kind = kind_of(kind_name)
    name = values.get("name")
    if not name or not _exists(session, kind, name):
        return add(session, kind_name, values, repos), True
    rights.require(session, f"ADD_{kind.right}")  # "unchanged" only for those who could have added it
    obj = find(session, kind, name)
    changed = differences(kind, obj, _clean(kind, values), repos)
    if changed:
        attr, (current, given) = next(iter(changed.items()))
        others = f" (and {len(changed) - 1} more field{'s' if len(changed) > 2 else ''})" if len(changed) > 1 else ""
        options = " ".join(_option_text(kind, a, g) for a, (_, g) in changed.items())
        raise AlreadyExists(
            f"{kind.name} {name!r} already exists with {attr} {current!r}, not {given!r}{others}: "
            f"change it with `flow update {kind.name} -n {shlex.quote(name)} {options}`"
        )
    return obj, False


def update(session: Session, kind_name: str, name: str, values: dict[str, Any], repos: tuple[str, ...] = (), *,
           create_queues: bool = False) -> Any:
    """Change the given fields of one object (None means: leave as is)."""
    kind = kind_of(kind_name)
    values = {k: v for k, v in _clean(kind, values).items() if v is not None and k != "name"}
    rights.require(session, f"UPDATE_{kind.right}")
    obj = find(session, kind, name, lock=True)
    if not values:
        raise ElasticCodeError(f"nothing to update for {kind.name} {name!r}: give at least one option (see --help)")
    prepare = PREPARE.get(kind.name)
    if prepare:
        values = prepare(session, values, repos, obj, create_queues=create_queues)
    for attr, value in values.items():
        setattr(obj, attr, value)
    _flush(session, kind, name)
    return obj


def rename(session: Session, kind_name: str, name: str, new_name: str) -> Any:
    kind = kind_of(kind_name)
    rights.require(session, f"UPDATE_{kind.right}")
    obj = find(session, kind, name, lock=True)
    obj.name = new_name
    _flush(session, kind, new_name)
    return obj


def delete(session: Session, kind_name: str, name: str) -> None:
    kind = kind_of(kind_name)
    rights.require(session, f"DELETE_{kind.right}")
    obj = find(session, kind, name, lock=True)
    if kind.name == "queue":
        users = session.execute(select(m.Socket.name).where(m.Socket.queue_id == obj.id).limit(3)).scalars().all()
        if users:
            raise ElasticCodeError(f"queue {name!r} is used by socket {users[0]!r}: delete or move its sockets first")
    session.delete(obj)
    _flush(session, kind, name)


# -- listing ---------------------------------------------------------------------------------


def _display(obj: Any, column: str) -> Any:
    if isinstance(obj, m.Socket) and column in ("processor", "queue"):
        return getattr(obj, column).name
    if isinstance(obj, m.Socket) and column == "function":
        return obj.task.function
    if isinstance(obj, m.Plug) and column in ("source", "target"):
        return getattr(obj, column).name
    if isinstance(obj, m.Privilege) and column == "name":
        return obj.right
    return getattr(obj, column, None)


def rows(session: Session, kind_name: str, name: str | None = None) -> list[dict[str, Any]]:
    """The listing `flow ls KIND` shows, as plain dicts (one per object, ordered by name)."""
    kind = kind_of(kind_name)
    rights.require(session, f"LS_{kind.right}S" if f"LS_{kind.right}S" in m.RIGHTS else f"READ_{kind.right}")
    query = select(kind.model).order_by(kind.model.name)
    if name:
        query = query.where(kind.model.name == name)
    objects = session.execute(query).scalars().all()
    columns = ("id",) + kind.columns
    return [{c: _display(obj, c) for c in columns} for obj in objects]
