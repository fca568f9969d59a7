"""The recorder's reads of the event stream, as text, parsed by hiredis alone.

redis-py turns an XREADGROUP reply into dicts in Python (`parse_stream_list`, `pairs_to_dict`),
and the recorder then decoded every field: together a sixth of its CPU per event. Here hiredis
decodes the reply (in C) and the pairs become a dict with `dict(zip(...))`.
"""

from __future__ import annotations

from typing import Any

import redis

Entry = tuple[str, dict[str, str]]  # a stream entry: its id and fields


def text_client(client: redis.Redis) -> redis.Redis:
    """A client of `client`'s server (own pool) whose replies are text and whose XREADGROUP replies
    are left as hiredis parsed them. Bytes that are not UTF-8 become U+FFFD: such an entry then
    fails its signature and is set aside, rather than failing the whole read."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": True, "encoding": "utf-8", "encoding_errors": "replace"}
    text = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))
    text.set_response_callback("XREADGROUP", _as_parsed)
    return text


def _as_parsed(response: Any, **_: Any) -> Any:
    return response


def entries(reply: Any) -> list[Entry]:
    """The live entries of a raw XREADGROUP reply (`[[stream, [[id, [field, value, ...]], ...]], ...]`);
    an entry deleted while pending comes back without fields and is left out."""
    found: list[Entry] = []
    for _stream, batch in (reply.items() if isinstance(reply, dict) else reply or ()):  # a dict in RESP3
        for entry_id, flat in batch:
            if flat:
                pairs = iter(flat)
                found.append((entry_id, dict(zip(pairs, pairs, strict=False))))  # field, value, field, value...
    return found


__all__ = ["Entry", "text_client", "entries"]
