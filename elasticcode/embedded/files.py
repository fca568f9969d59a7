"""Folders and their permissions: where the services' files go as root, and whether another
user (postgres' own) can reach them.

Nothing here changes a permission it did not create: `make_dir` only sets the mode of a folder
it has just made, and the reachability checks only read modes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

VAR_ROOT = Path("/var/lib/elasticcode")  # only used as root, for what postgres' own user must reach


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def make_dir(path: Path, mode: int = 0o700) -> bool:
    """Create `path` (parents included) with exactly `mode`; True if this call created it."""
    if path.is_dir():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        return False
    os.chmod(path, mode)  # mkdir's mode is filtered by the umask; this folder is ours
    return True


def traversable_by_others(path: Path) -> bool:
    """True if every folder from / down to `path` (included) has o+x."""
    path = path.resolve()
    for p in [path, *path.parents]:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def readable_by_others(path: Path, executable: bool = False) -> bool:
    """True if another user can reach `path` and read (and run, if asked) it."""
    if not traversable_by_others(path.parent):
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IROTH) and (not executable or bool(mode & stat.S_IXOTH))
