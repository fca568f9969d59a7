"""Request and response models, built from the catalog's kinds so a field means what its `flow add` option means."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..catalog.kinds import KINDS, Kind

INT32 = 2**31 - 1
# The kinds served over HTTP (users, rights, nodes and agents stay with `flow`).
SERVED = ("queue", "processor", "socket", "plug")
NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,255}$"  # any printable name, as the CLI takes it


def _type(field: Any) -> Any:
    if isinstance(field.type, tuple):
        return Literal[tuple(field.type)]  # type: ignore[valid-type]
    if field.type is int:
        return int
    if field.type is bool:
        return bool
    return str


def _input_field(field: Any, required: bool) -> tuple[Any, Any]:
    kind = _type(field)
    extra: dict[str, Any] = {"description": field.help}
    if kind is int:
        extra.update(ge=0, le=INT32)
    elif kind is str:
        extra.update(max_length=4096, pattern=r"^[^\x00]*$")
        if field.attr == "name":
            extra.update(pattern=NAME_PATTERN, max_length=255)
    if required:
        return kind, Field(..., **extra)
    return kind | None, Field(None, **extra)


def create_body(kind: Kind) -> type[BaseModel]:
    fields = {f.attr: _input_field(f, f.required) for f in kind.fields}
    return create_model(f"{kind.name.capitalize()}Create", __config__=ConfigDict(extra="forbid"), **fields)


def update_body(kind: Kind) -> type[BaseModel]:
    fields = {f.attr: _input_field(f, False) for f in kind.fields if f.attr != "name"}
    return create_model(f"{kind.name.capitalize()}Update", __config__=ConfigDict(extra="forbid"), **fields)


def row_model(kind: Kind, full: bool = False) -> type[BaseModel]:
    """A listing row (`flow ls` columns), or with `full` the whole object (every `flow add` field too)."""
    types = {f.attr: _type(f) for f in kind.fields}
    known: dict[str, Any] = {"id": (str, ...), "name": (str, ...), "owner": (str | None, None),
                             "lastupdated": (datetime | None, None), "status": (str | None, None),
                             "status_message": (str | None, None)}
    fields = {}
    columns = ("id", *kind.columns) + (tuple(f.attr for f in kind.fields if f.attr not in kind.columns) if full else ())
    for column in dict.fromkeys(columns):
        if column in known:
            fields[column] = known[column]
        else:
            t = types.get(column, str)
            fields[column] = ((int if t is int else bool if t is bool else str) | None, None)
    return create_model(kind.name.capitalize() + ("" if full else "Row"), **fields)


def page_model(kind: Kind, row: type[BaseModel]) -> type[BaseModel]:
    return create_model(f"{kind.name.capitalize()}Page", items=(list[row], ...), page=(int, ...), rows=(int, ...),
                        total=(int, ...))


BODIES = {name: (create_body(KINDS[name]), update_body(KINDS[name])) for name in SERVED}
ROWS = {name: row_model(KINDS[name]) for name in SERVED}
OBJECTS = {name: row_model(KINDS[name], full=True) for name in SERVED}
PAGES = {name: page_model(KINDS[name], ROWS[name]) for name in SERVED}


class Message(BaseModel):
    message: str


class WhoAmI(BaseModel):
    user: str
    operator: bool
    rights: list[str]


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    args: list[Any] = Field(default_factory=list, description="Positional arguments (JSON values)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (JSON values)")
    wait: bool = Field(True, description="Wait for the result (sync); false returns the call id at once")
    timeout: float = Field(30.0, gt=0, le=3600, description="Seconds to wait for the result when waiting")


class RunResult(BaseModel):
    id: str
    socket: str
    state: Literal["queued", "finished", "failed"]
    result: Any = None
    error: str | None = None
    waiting: str | None = Field(None, description="Why the call may wait in its queue (its processor is not running)")


class CallSummary(BaseModel):
    id: str
    name: str | None = None
    state: str | None = None
    owner: str | None = None
    received: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    duration: float | None = None
    tracking: str | None = None
    parent: str | None = None
    worker: str | None = None
    host: str | None = None


class CallPage(BaseModel):
    items: list[CallSummary]
    page: int
    rows: int
    total: int


class EventRecord(BaseModel):
    name: str | None = None
    created: datetime | None = None
    note: str | None = None


class CallDetail(CallSummary):
    processor: str | None = None
    argument: str | None = None
    deliveries: int | None = None
    created: datetime | None = None
    error: str | None = None
    events: list[EventRecord] = Field(default_factory=list)


class CallTree(BaseModel):
    call: CallSummary
    children: list[CallTree] = Field(default_factory=list)


class CallResult(BaseModel):
    id: str
    state: str | None = None
    result: Any = None
    error: str | None = None
