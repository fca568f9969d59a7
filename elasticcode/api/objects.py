"""Queues, processors, sockets and plugs: list (paged), read, add, update, delete; processor lifecycle.

Every operation is the catalog function `flow` calls (`elasticcode/catalog/ops.py`), in one
transaction as the token's role: the same checks, the same rights, the same one-line errors.
"""


from typing import Any

from fastapi import APIRouter, Path, Response

from .. import catalog
from ..catalog.kinds import KINDS
from ..catalog.rights import held_rights, is_operator
from .deps import PAGE, ROWS, Api, Bearer
from .problems import responses
from .schemas import BODIES, NAME_PATTERN, OBJECTS, PAGES, SERVED, Message, WhoAmI

router = APIRouter()
NAME = Path(..., pattern=NAME_PATTERN, max_length=255, description="The object's name")
LIFECYCLE = {"start": "running", "stop": "stopped", "pause": "paused", "resume": "running", "restart": "running"}
ERRORS = responses(400, 401, 403, 404, 422, 503)


def _value(obj: Any, attr: str) -> Any:
    """A field as `flow add` takes it: names for references, the function's name for a socket."""
    if attr in ("processor", "queue", "source", "target"):
        ref = getattr(obj, attr, None)
        return ref.name if ref is not None else None
    if attr == "function":
        return obj.task.function if obj.task is not None else None
    return getattr(obj, attr, None)


def _row(session, kind: str, name: str) -> dict[str, Any]:
    obj = catalog.find(session, kind, name)  # "does not exist" in the CLI's words; your own row first
    spec = KINDS[kind]
    return {c: _value(obj, c) for c in ("id", *spec.columns, *(f.attr for f in spec.fields))}


def _register(kind_name: str) -> None:
    kind = KINDS[kind_name]
    create, update = BODIES[kind_name]
    row_model, page_model = OBJECTS[kind_name], PAGES[kind_name]
    plural, tag = kind.plural, kind.plural

    @router.get(f"/{plural}", response_model=page_model, tags=[tag], responses=ERRORS,
                summary=f"List your {plural} (paged, by name)", operation_id=f"list_{plural}")
    def listing(page: int = PAGE, rows: int = ROWS, *, api: Api, bearer: Bearer):
        with api.as_user(bearer) as (_role, session):
            items = catalog.rows(session, kind_name)
        return {"items": items[(page - 1) * rows: page * rows], "page": page, "rows": rows, "total": len(items)}

    @router.get(f"/{plural}/{{name}}", response_model=row_model, tags=[tag], responses=ERRORS,
                summary=f"One {kind_name}", operation_id=f"get_{kind_name}")
    def read(name: str = NAME, *, api: Api, bearer: Bearer):
        with api.as_user(bearer) as (_role, session):
            return _row(session, kind_name, name)

    @router.post(f"/{plural}", response_model=row_model, status_code=201, tags=[tag],
                 responses=responses(400, 401, 403, 404, 409, 422, 503),
                 summary=f"Add a {kind_name} (as `flow add {kind_name}`)", operation_id=f"add_{kind_name}")
    def add(body: create, *, api: Api, bearer: Bearer):  # type: ignore[valid-type]
        values = body.model_dump(exclude_none=True)
        with api.as_user(bearer) as (_role, session):
            catalog.add(session, kind_name, values, api.settings.repositories)
            session.flush()
            return _row(session, kind_name, values["name"])

    @router.patch(f"/{plural}/{{name}}", response_model=row_model, tags=[tag],
                  responses=responses(400, 401, 403, 404, 409, 422, 503),
                  summary=f"Change fields of a {kind_name} (as `flow update {kind_name}`)", operation_id=f"update_{kind_name}")
    def change(body: update, name: str = NAME, *, api: Api,  # type: ignore[valid-type]
               bearer: Bearer):
        values = body.model_dump(exclude_none=True)
        with api.as_user(bearer) as (_role, session):
            catalog.update(session, kind_name, name, values, api.settings.repositories)
            session.flush()
            return _row(session, kind_name, name)

    @router.delete(f"/{plural}/{{name}}", status_code=204, tags=[tag], responses=ERRORS,
                   summary=f"Delete a {kind_name} (as `flow delete {kind_name}`)", operation_id=f"delete_{kind_name}")
    def remove(name: str = NAME, *, api: Api, bearer: Bearer) -> Response:
        with api.as_user(bearer) as (_role, session):
            catalog.delete(session, kind_name, name)
        return Response(status_code=204)


for _kind in SERVED:
    _register(_kind)


def _lifecycle(action: str, requested: str) -> None:
    @router.post(f"/processors/{{name}}/{action}", response_model=Message, tags=["processors"], responses=ERRORS,
                 summary=f"{action.capitalize()} a processor (agents act on the requested status)",
                 operation_id=f"{action}_processor")
    def lifecycle(name: str = NAME, *, api: Api, bearer: Bearer):
        with api.as_user(bearer) as (_role, session):
            catalog.update(session, "processor", name, {"requested_status": requested})
        return {"message": f"processor {name}: requested {requested}"}


for _action, _state in LIFECYCLE.items():
    _lifecycle(_action, _state)


@router.get("/whoami", response_model=WhoAmI, tags=["users"], responses=responses(401, 503),
            summary="The user your token acts as, and their rights", operation_id="whoami")
def whoami(api: Api, bearer: Bearer):
    with api.as_user(bearer) as (role, session):
        return {"user": role, "operator": is_operator(session), "rights": sorted(held_rights(session, role))}
