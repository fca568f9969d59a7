"""The result backend: Celery's Redis backend with sealed results (`sealing.py`).

A worker seals the result (and the traceback) of each call with the key of the user the call
runs as; a reader opens it with the keys its process holds (`signing.KEYS`: a client holds its
own user's, a worker its owner's). A reader without the key gets, in place of the result, a
PermissionError naming the user it belongs to. Results of processes that hold no key (tests'
raw Celery, other backends than Redis) are stored as Celery stores them.
"""

from __future__ import annotations

from typing import Any

from celery import states
from celery.backends.redis import RedisBackend
from kombu.serialization import dumps, loads

from . import sealing, signing

_CONTENT_TYPE = "application/json"


class SealedResults:
    """Mixed in before a Celery backend class: seal on store, open on read."""

    def _get_result_meta(self, result, state, traceback, request, format_date=True, encode=False):
        meta = super()._get_result_meta(result, state, traceback, request, format_date=format_date, encode=encode)
        user = sealing.request_user(request)
        key = signing.KEYS.get(user) if user else None
        call_id = getattr(request, "id", None)
        if key is None or not call_id:
            return meta
        _, _, data = dumps({"result": meta["result"], "traceback": meta["traceback"]}, serializer="json")
        meta["result"] = sealing.seal(key, user, call_id, data.encode() if isinstance(data, str) else data)
        meta["traceback"] = None
        return meta

    def meta_from_decoded(self, meta: dict[str, Any]) -> dict[str, Any]:
        sealed = meta.get("result") if isinstance(meta, dict) else None
        if sealing.is_sealed(sealed):
            user, call_id = sealed[sealing.MARK], str(meta.get("task_id") or "")
            key = signing.KEYS.get(user)
            try:
                if key is None:
                    raise ValueError(f"the result of call {call_id} belongs to {user!r}: only that user can read it")
                inner = loads(sealing.open_sealed(key, call_id, sealed), _CONTENT_TYPE, "utf-8")
                meta["result"], meta["traceback"] = inner["result"], inner["traceback"]
            except ValueError as exc:
                if meta.get("status") == states.SUCCESS:
                    meta["status"] = states.FAILURE  # never hand the sealed text out as if it were the value
                meta["result"] = {"exc_type": "PermissionError", "exc_module": "builtins", "exc_message": [str(exc)]}
                meta["traceback"] = None
        return super().meta_from_decoded(meta)


class SealedRedisBackend(SealedResults, RedisBackend):
    pass


_SEALED: dict[type, type] = {RedisBackend: SealedRedisBackend}


def sealed_backend_class(backend_cls: type) -> type:
    """The sealing variant of a Redis backend class (`rediss://`, sentinel...); others unchanged."""
    if not issubclass(backend_cls, RedisBackend) or issubclass(backend_cls, SealedResults):
        return backend_cls
    sealed = _SEALED.get(backend_cls)
    if sealed is None:
        sealed = _SEALED[backend_cls] = type(f"Sealed{backend_cls.__name__}", (SealedResults, backend_cls), {})
    return sealed


__all__ = ["SealedResults", "SealedRedisBackend", "sealed_backend_class"]
