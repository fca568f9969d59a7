"""The back-pressure state of plugs, for `flow ls plugs` (runtime/backpressure.py sets it)."""

from __future__ import annotations

import json
from typing import Any

from .context import FlowContext


def pressure_states(ctx: FlowContext) -> dict[tuple[str, str], dict[str, Any]]:
    """(owner, plug) -> what a waiting forward last saw; empty without a reachable Redis."""
    settings = ctx.settings
    if not (settings.broker or settings.backend):
        return {}
    try:
        from ..runtime import naming
        from ..runtime.connections import coordination_client

        client = coordination_client(settings.broker, settings.backend)
        keys = list(client.scan_iter(match=naming.PRESSURE_PATTERN, count=500))
        values = client.mget(keys) if keys else []
    except Exception:  # noqa: BLE001 - a listing without the live state is still a listing
        return {}
    states = {}
    for key, raw in zip(keys, values, strict=True):
        if raw:
            owner = (key.decode() if isinstance(key, bytes) else key).split(":")[2]
            state = json.loads(raw)
            states[(owner, state.get("plug"))] = state
    return states


def with_pressure(ctx: FlowContext, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each plug row with `pressure`: `back-pressured (N queued)` while its forwards wait, `flowing`
    when it is bounded and they do not, empty when it has no bounds."""
    states = pressure_states(ctx)
    for row in rows:
        state = states.get((row.get("owner"), row.get("name")))
        if state:
            row["pressure"] = f"back-pressured ({state.get('queued')} queued)"
        else:
            row["pressure"] = "flowing" if row.get("max_queued") or row.get("max_bytes") else ""
    return rows
