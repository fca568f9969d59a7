"""The stack's state file (`home/stack.json`: layout, ports, app role; nothing secret) and the
lock that keeps two `flow up`/`flow down` from running at once."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import ServiceUnavailable
from ..security import write_private_file

STATE_FILE = "stack.json"
STATE_VERSION = 1


def load_state(home: Path) -> dict | None:
    path = home / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ServiceUnavailable(f"cannot read {path} ({exc}); fix or delete it, then retry") from None


def save_state(home: Path, state: dict) -> None:
    # Write then rename, so a crash never leaves half a state file behind.
    path = home / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    write_private_file(tmp, json.dumps({**state, "version": STATE_VERSION}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(home: Path) -> Iterator[None]:
    """Serialise up/down between processes (two notebooks running `flow up` at once)."""
    fd = os.open(home / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
