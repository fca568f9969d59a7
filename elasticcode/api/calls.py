"""Running sockets, reading calls, and the history (JSON, Apache Arrow, Parquet)."""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from ..catalog import calls as catalog_calls
from ..db import model as m
from ..errors import ElasticCodeError
from ..runtime import codec
from .deps import PAGE, ROWS, Api, ApiContext, Bearer
from .history import ARROW, PARQUET, history_frame
from .problems import CallTimeout, responses
from .schemas import NAME_PATTERN, CallDetail, CallPage, CallResult, CallTree, RunRequest, RunResult

router = APIRouter()
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
CALL_ID = Path(..., pattern=UUID_PATTERN, max_length=36, description="A call id (as `flow ls calls` shows)")
ERRORS = responses(400, 401, 403, 404, 422, 503)
# Waiting for results happens in threads of their own, so that many slow calls never take the
# threads every other request needs.
WAITERS = anyio.CapacityLimiter(200)
SETTLE_SECONDS = 5.0  # how long a read waits for the recorder to have a call this server saw return
_returned: dict[str, float] = {}  # call id -> when its result came back through this server (bounded)
_returned_lock = threading.Lock()


def _jsonable(value: Any) -> Any:
    """A function's return value as JSON (frames, arrays and datetimes as the wire codec writes them)."""
    return json.loads(codec.dumps(value))


def _note(call_id: str) -> None:
    with _returned_lock:
        _returned[call_id] = time.monotonic()
        if len(_returned) > 10_000:
            for key in list(_returned)[:1000]:
                _returned.pop(key, None)


def _send(api: ApiContext, bearer: str, socket: str, body: RunRequest):
    from ..client.dispatch import WaitingWarning, describe_wait

    with api.as_user(bearer) as (role, _session):
        pass
    dispatcher = api.dispatchers.for_role(role)
    route = dispatcher.resolve(socket)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WaitingWarning)
        result = dispatcher.send(socket, tuple(body.args), dict(body.kwargs))
    return result, describe_wait(route)


def _wait(result, socket: str, timeout: float, waiting: str | None) -> dict[str, Any]:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from ..client.dispatch import wait_result

    try:
        value = wait_result(result, None if math.isinf(timeout) else timeout)
    except CeleryTimeout:
        why = f"stays queued: {waiting}" if waiting else "it stays queued or running and will finish"
        raise CallTimeout(f"call {result.id} to {socket} has no result after {timeout:g}s: {why} "
                          f"(follow it with GET /calls/{result.id})", result.id) from None
    except Exception as exc:  # noqa: BLE001 - the remote function's error, as the CLI prints it
        _note(result.id)
        return {"id": result.id, "socket": socket, "state": "failed", "error": f"{exc.__class__.__name__}: {exc}"}
    _note(result.id)
    return {"id": result.id, "socket": socket, "state": "finished", "result": _jsonable(value)}


@router.post("/sockets/{name}/run", response_model=RunResult, tags=["calls"],
             responses={202: {"description": "Sent (wait=false): the call id", "model": RunResult},
                        **responses(400, 401, 403, 404, 422, 503, 504)},
             summary="Call a socket: wait for its result, or return the call id at once", operation_id="run_socket")
async def run_socket(body: RunRequest, name: str = Path(..., pattern=NAME_PATTERN, max_length=255), *,
                     api: Api, bearer: Bearer):
    result, waiting = await anyio.to_thread.run_sync(_send, api, bearer, name, body)
    if not body.wait:
        return JSONResponse({"id": result.id, "socket": name, "state": "queued", "waiting": waiting}, status_code=202)
    outcome = await anyio.to_thread.run_sync(_wait, result, name, body.timeout, waiting, limiter=WAITERS)
    return {**outcome, "waiting": waiting}


def _call_id(value: str) -> str:
    return catalog_calls._call_id(value)  # the CLI's check and message


def _settle(api: ApiContext, role: str, call_id: str) -> None:
    """A call whose result this server handed out is in the history before it is read (a few seconds at most)."""
    if call_id not in _returned:
        return
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        with api.as_role(role) as session:
            state = session.execute(select(m.Call.state).where(m.Call.id == call_id)).scalar()
        if state in ("finished", "failed", "dead"):
            break
        time.sleep(0.05)
    with _returned_lock:
        _returned.pop(call_id, None)


@router.get("/calls", response_model=CallPage, tags=["calls"], responses=ERRORS,
            summary="Your calls, newest first (paged)", operation_id="list_calls")
def list_calls(page: int = PAGE, rows: int = ROWS, unfinished: bool = False, ascend: bool = False,
               tracking: str | None = Query(None, pattern=UUID_PATTERN, max_length=36, description="Only the calls of this flow run (root id)"),
               socket: str | None = Query(None, pattern=NAME_PATTERN, max_length=255, description="Only this socket's calls"), *,
               api: Api, bearer: Bearer):
    with api.as_user(bearer) as (_role, session):
        items, total = catalog_calls.page_of_calls(session, page, rows, unfinished, ascend, tracking, socket)
    return {"items": items, "page": page, "rows": rows, "total": total}


def _detail(call: m.Call) -> dict[str, Any]:
    out = {c: getattr(call, c) for c in CallDetail.model_fields if c != "events"}
    out["events"] = [{"name": e.name, "created": e.created, "note": e.note} for e in call.events]
    return out


@router.get("/calls/{call_id}", response_model=CallDetail, tags=["calls"], responses=ERRORS,
            summary="One call with its events", operation_id="get_call")
def get_call(call_id: str = CALL_ID, *, api: Api, bearer: Bearer):
    call_id = _call_id(call_id)
    with api.as_user(bearer) as (role, _session):
        pass
    _settle(api, role, call_id)
    with api.as_role(role) as session:
        return _detail(catalog_calls.get_call(session, call_id))


@router.get("/calls/{call_id}/tree", response_model=CallTree, tags=["calls"], responses=ERRORS,
            summary="The call tree: the call and every call it caused", operation_id="get_call_tree")
def get_call_tree(call_id: str = CALL_ID, whole_flow: bool = Query(False, description="From the flow run's root"), *,
                  api: Api, bearer: Bearer):
    call_id = _call_id(call_id)
    with api.as_user(bearer) as (role, _session):
        pass
    _settle(api, role, call_id)
    with api.as_role(role) as session:
        return dict(catalog_calls.call_tree(session, call_id, whole_flow=whole_flow))


def _big_result(api: ApiContext, role: str, call_id: str) -> Any:
    found = api.dispatchers.for_role(role).result(call_id)
    return _jsonable(found.result) if found.state == "SUCCESS" else None


@router.get("/calls/{call_id}/result", response_model=CallResult, tags=["calls"], responses=ERRORS,
            summary="A call's result (or error)", operation_id="get_call_result")
def get_call_result(call_id: str = CALL_ID, *, api: Api, bearer: Bearer):
    call_id = _call_id(call_id)
    with api.as_user(bearer) as (role, _session):
        pass
    _settle(api, role, call_id)
    with api.as_role(role) as session:
        call = catalog_calls.get_call(session, call_id)  # your own calls only (row-level security)
        state, error, stored = call.state, call.error, call.result
    value = stored
    if stored is None and state == "finished":
        value = _big_result(api, role, call_id)  # bigger than a call record keeps: the result backend's copy
    return {"id": call_id, "state": state, "result": value, "error": error}


@router.get("/history", tags=["calls"],
            responses={200: {"description": "Calls, oldest first: JSON records, or a table as Apache Arrow (IPC "
                                             "stream) or Parquet, by the Accept header",
                             "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                                         ARROW: {"schema": {"type": "string", "format": "binary"}},
                                         PARQUET: {"schema": {"type": "string", "format": "binary"}}}},
                       **responses(400, 401, 403, 406, 422, 503)},
            summary="The call history with the filters of `elasticcode.history()`", operation_id="history")
def history(request: Request,
            socket: str | None = Query(None, pattern=NAME_PATTERN, max_length=255, description="Socket name"),
            root: str | None = Query(None, pattern=UUID_PATTERN, max_length=36, description="A flow run's root call id"),
            since: Annotated[datetime | None, Query(description="Calls created at or after this time (ISO 8601)")] = None,
            state: str | None = Query(None, max_length=20, pattern=r"^[a-z]+$", description="queued, received, running, finished, failed or dead"),
            limit: int | None = Query(None, ge=0, le=10_000_000, description="At most this many calls"),
            results: bool = Query(False, description="Add the `result` column (JSON text in Arrow/Parquet)"),
            combinators: bool = Query(False, description="Include the workflow combinators' own rows"), *,
            api: Api, bearer: Bearer) -> Response:
    accept = request.headers.get("accept", "application/json")
    if root is not None:
        root = _call_id(root)
    with api.as_user(bearer) as (role, _session):
        pass
    if root:
        _settle(api, role, root)
    with api.as_role(role) as session:
        frame = history_frame(session, socket=socket, root=root, since=since, state=state, limit=limit,
                              results=results, combinators=combinators)
    return _render(frame, accept)


def _render(frame, accept: str) -> Response:
    from .history import to_arrow, to_parquet

    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if ARROW in kinds:
        return Response(to_arrow(frame), media_type=ARROW)
    if PARQUET in kinds:
        return Response(to_parquet(frame), media_type=PARQUET)
    if not any(k in ("application/json", "*/*", "application/*", "") for k in kinds):
        raise NotAcceptable(f"history comes as application/json, {ARROW} or {PARQUET}, not {accept!r}")
    text = frame.to_json(orient="records", date_format="iso", date_unit="us")
    return Response(text, media_type="application/json")


class NotAcceptable(ElasticCodeError):
    status = 406

