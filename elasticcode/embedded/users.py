"""System users the services and workers run as when we are root (created on demand, without a
home or a shell): `elasticcode` for PostgreSQL (which refuses to run as root) and
`elasticcode-worker` for processor code (which must not run as root)."""

from __future__ import annotations

import grp
import pwd
import shutil

from ..errors import ServiceUnavailable
from .processes import last_meaningful_line, run

WORKER_USER = "elasticcode-worker"  # as root, processors' workers run as this user


def system_user(name: str, why: str) -> tuple[int, int]:
    """The uid and gid of the system user `name`, created (no home, no shell) on first use."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        try:  # a group of its own, so that giving the group access gives it to this user alone
            grp.getgrnam(name)
            group = ["--gid", name]
        except KeyError:
            group = ["--user-group"]
        rc, out = run([useradd, "--system", "--no-create-home", *group, "--shell", "/usr/sbin/nologin", name],
                      "useradd")
        if rc not in (0, 9):  # 9: created meanwhile by another process
            raise ServiceUnavailable(f"could not create the system user {name!r} {why}: "
                                     f"{last_meaningful_line(out)}; create it with: useradd --system {name}") from None
        pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


def worker_user() -> tuple[int, int]:
    """uid and gid of WORKER_USER (as root only: creating users needs root)."""
    return system_user(WORKER_USER, "processor code runs as")


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
