"""Which services the Python API talks to: the active `flow` configuration unless `configure()` says otherwise."""

from __future__ import annotations

import threading

from .. import config
from ..config import Settings
from .dispatch import Dispatcher

_settings: Settings | None = None
_settings_lock = threading.Lock()


def default_settings() -> Settings:
    """Configuration as the CLI resolves it (environment, then the ini file), read once."""
    global _settings
    with _settings_lock:
        if _settings is None:
            _settings = config.load()
        return _settings


def configure(db: str | None = None, broker: str | None = None, backend: str | None = None, ini: str | None = None) -> Settings:
    """Point the API at other services (the default is the active `flow` configuration)."""
    global _settings
    with _settings_lock:
        _settings = config.load(ini, db=db, broker=broker, backend=backend)
        return _settings


def reset_settings() -> None:
    """Read the configuration again on next use (after `flow up`, `flow login`, `flow --config`)."""
    global _settings
    with _settings_lock:
        _settings = None
    Dispatcher.forget_all()


def default_dispatcher() -> Dispatcher:
    return Dispatcher.for_settings(default_settings())
