"""A private local PostgreSQL + Redis, started and stopped by our own launcher (`flow up` / `flow down`)."""

from .stack import ServiceStatus, StackUrls, down, purge, status, up, urls

__all__ = ["ServiceStatus", "StackUrls", "down", "purge", "status", "up", "urls"]
