"""Argument joins: a socket with several plugged arguments fires once all have arrived for one flow run.

Each arrival is stored by a Lua script on a Redis hash per (target socket, flow run); the
arrival that completes the set claims it exactly once. Leftovers expire after a day.
"""

from __future__ import annotations

import redis

from . import naming

# Stores one argument of a join and, if that completes the set, claims the join exactly once.
# KEYS[1] join hash; ARGV: ttl, argument, value, required argument names...
JOIN_SCRIPT = """
redis.call('HSET', KEYS[1], 'arg:' .. ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
for i = 4, #ARGV do
  if redis.call('HEXISTS', KEYS[1], 'arg:' .. ARGV[i]) == 0 then return nil end
end
if redis.call('HSETNX', KEYS[1], '__fired__', '1') == 0 then return nil end
local out = {}
for i = 4, #ARGV do
  table.insert(out, ARGV[i])
  table.insert(out, redis.call('HGET', KEYS[1], 'arg:' .. ARGV[i]))
end
return out
"""


class Joins:
    def __init__(self, client: redis.Redis):
        self.script = client.register_script(JOIN_SCRIPT)

    def arrive(self, target: str, tracking: str, argument: str, value_json: str, required: list[str]) -> dict[str, str] | None:
        """Store one argument; return every argument's JSON when this arrival completes the set (once)."""
        out = self.script(
            keys=[naming.join_key(target, tracking)],
            args=[naming.JOIN_TTL_SECONDS, argument, value_json, *sorted(required)],
        )
        if not out:
            return None
        pairs = [item.decode() if isinstance(item, bytes) else item for item in out]
        return dict(zip(pairs[::2], pairs[1::2], strict=True))
