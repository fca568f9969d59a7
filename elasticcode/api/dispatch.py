"""Calls sent as a token's user: the client library's dispatcher, acting as a role of the API's login.

The library's `Dispatcher` learns its user from its database connection; the API server's
connection is its own login, so each user gets a dispatcher (`Dispatcher.as_role`) that reads
the same things (the socket's route, the user's call key) in a transaction run as that user's
role. All share one Celery app and one Redis client. Calls are signed with the user's own key,
which the database issues only while the user holds RUN_TASK, exactly as for `flow task run`.
"""

from __future__ import annotations

import threading

from ..client.dispatch import Dispatcher

KEY_TTL = 60.0  # seconds a user's call key is trusted before it is asked for again (RUN_TASK may be revoked)


class Dispatchers:
    """One base dispatcher (Celery app, Redis) and one light dispatcher per user."""

    def __init__(self, settings, open_role):
        self._base: Dispatcher | None = None
        self._settings, self._open = settings, open_role
        self._by_role: dict[str, Dispatcher] = {}
        self._lock = threading.Lock()

    def for_role(self, role: str) -> Dispatcher:
        with self._lock:
            if self._base is None:
                self._base = Dispatcher(self._settings)
            found = self._by_role.get(role)
            if found is None:
                found = self._by_role[role] = self._base.as_role(role, lambda: self._open(role), KEY_TTL)
            return found
