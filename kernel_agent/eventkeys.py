"""The keys the recorder verifies call events with: each user's call key, from the model database.

Keys are issued once and never change, so a key found is kept; a user without one (no RUN_TASK
right) is asked again after `RETRY_MISSING` seconds, so a right granted later is seen.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import text

from elasticcode.db.engine import get_engine

from .context import IDLE_TRANSACTION_TIMEOUT

RETRY_MISSING = 30.0
KEYS_OF = text("SELECT u, elasticcode_call_key_of(u) FROM unnest(CAST(:users AS text[])) AS u")


class EventKeys:
    def __init__(self, db_url: str):
        self.db_url = db_url
        self.keys: dict[str, str] = {}
        self.missing: dict[str, float] = {}  # user -> when to ask again

    def of(self, users: Iterable[str]) -> dict[str, str | None]:
        """The call key of each user (None: the user has none); one query for those not known yet."""
        wanted = set(users)
        now = time.monotonic()
        ask = sorted(u for u in wanted if u not in self.keys and self.missing.get(u, 0.0) <= now)
        if ask:
            with get_engine(self.db_url, IDLE_TRANSACTION_TIMEOUT).begin() as conn:
                for user, key in conn.execute(KEYS_OF, {"users": ask}):
                    if key:
                        self.keys[user] = key
                        self.missing.pop(user, None)
                    else:
                        self.missing[user] = now + RETRY_MISSING
        return {u: self.keys.get(u) for u in wanted}
