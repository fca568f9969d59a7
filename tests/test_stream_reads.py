"""The recorder's stream reads (kernel_agent/streamread.py) against real Redis: the entries redis-py's
own parsing gives, as text; an entry deleted while pending left out; bytes that are not UTF-8
read (replaced), not an error that would stop every read after it."""

from __future__ import annotations

import uuid

from elasticcode.runtime.connections import redis_client
from kernel_agent import streamread


def test_stream_reads_give_what_redis_py_gives_as_text(redis_base):
    client = redis_client(redis_base)
    text = streamread.text_client(client)
    stream, group = f"test:reads:{uuid.uuid4().hex}", "g"
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
        sent = [{"call": str(uuid.uuid4()), "n": str(i), "quote": 'a "b" ,c\n', "accent": "é"} for i in range(5)]
        ids = [client.xadd(stream, fields).decode() for fields in sent]
        poison = client.xadd(stream, {"call": "x", "bad": b"\xff\xfe ok"}).decode()

        found = streamread.entries(text.xreadgroup(group, "c", {stream: ">"}, count=100))
        assert [entry_id for entry_id, _ in found] == [*ids, poison]
        assert [fields for _, fields in found[:5]] == sent
        assert found[5][1] == {"call": "x", "bad": "\ufffd\ufffd ok"}
        # redis-py's own parsing of the same entries, decoded: the same.
        theirs = client.xrange(stream)
        assert [(i.decode(), {k.decode(): v.decode() for k, v in f.items()}) for i, f in theirs[:5]] == found[:5]

        client.xdel(stream, ids[1])  # deleted while pending: XREADGROUP gives it with no fields
        pending = streamread.entries(text.xreadgroup(group, "c", {stream: "0"}, count=100))
        assert [entry_id for entry_id, _ in pending] == [ids[0], *ids[2:], poison]
        assert streamread.entries(None) == [] == streamread.entries([])
    finally:
        client.delete(stream)
