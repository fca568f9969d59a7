"""Publishes the route table to Redis, so workers and clients never query PostgreSQL on the hot path."""

from __future__ import annotations

import redis
from sqlalchemy.orm import Session

from elasticcode.catalog.routes import build_routes
from elasticcode.runtime import routes


class Publisher:
    """Publishes only when the table changed (or the key is gone, e.g. Redis restarted empty)."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self.published = ""  # the table last published, encoded

    def publish(self, session: Session) -> None:
        encoded = build_routes(session).dumps()
        if encoded != self.published or not routes.is_published(self.client):
            routes.publish(self.client, encoded)
            self.published = encoded
