"""Sealed results: what a call returned is readable only by the user who made it.

A call's result goes through Redis twice: in the result backend (`celery-task-meta-<id>`, and
the channel of the same name that `.get()` listens on) and in the `result` field of its postrun
event. Everyone who may send calls has the broker's URL, so both are sealed with the call's
user's key (the call key the database issues, `runtime/signing.py`): AES-256-GCM from
`cryptography` (a key derived from the call key, a random 96-bit nonce, the call id bound in as
associated data, so a sealed value cannot be moved to another call). Workers seal with their
owner's key; the user's client and the agents' recorders (which fetch keys from the database)
open them. Anyone else reads `{"ec_sealed": user, "data": ...}`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from . import naming

MARK = "ec_sealed"  # the field that marks a sealed value (its value: the user whose key seals it)
_ciphers: dict[str, Any] = {}  # call key -> AESGCM


def _cipher(key: str) -> Any:
    cipher = _ciphers.get(key)
    if cipher is None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # only where results are sealed

        cipher = _ciphers[key] = AESGCM(hashlib.sha256(b"elasticcode result\n" + key.encode()).digest())
    return cipher


def seal(key: str, user: str, call_id: str, data: bytes) -> dict[str, str]:
    """`data`, encrypted for `user` and bound to `call_id`."""
    nonce = os.urandom(12)
    sealed = nonce + _cipher(key).encrypt(nonce, data, call_id.encode())
    return {MARK: user, "data": base64.b64encode(sealed).decode()}


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get(MARK), str) and isinstance(value.get("data"), str)


def open_sealed(key: str, call_id: str, value: dict[str, str]) -> bytes:
    """The data sealed in `value`; raises ValueError when it was not sealed for this key and call."""
    from cryptography.exceptions import InvalidTag

    raw = base64.b64decode(value["data"])
    try:
        return _cipher(key).decrypt(raw[:12], raw[12:], call_id.encode())
    except InvalidTag:
        raise ValueError(f"call {call_id}: sealed data does not open with {value[MARK]!r}'s key") from None


def request_user(request: Any) -> str | None:
    """The user a worker's task request runs as (the signed header, checked before the pool)."""
    if request is None:
        return None
    user = getattr(request, naming.H_USER, None)
    if user is None:
        user = (getattr(request, "headers", None) or {}).get(naming.H_USER)
    return user


__all__ = ["MARK", "seal", "is_sealed", "open_sealed", "request_user"]
