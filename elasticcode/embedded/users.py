"""System users the services and workers run as when we are root (created on demand, without a
home or a shell): `elasticcode` for PostgreSQL (which refuses to run as root), and for processor
code (which must not run as root) one user per ElasticCode user, `ecw-<hash of the owner>`, in
the group `elasticcode-worker` that lets every worker into the shared folders (venvs, run
folders, the embedded Redis socket). One user per owner, so that one user's processor code can
read neither another's checkouts and worker specs nor, through /proc, another's workers."""

from __future__ import annotations

import grp
import hashlib
import pwd
import shutil
import time

from ..errors import ServiceUnavailable
from .processes import last_meaningful_line, run

WORKER_USER = "elasticcode-worker"  # the group of every worker user (and the user of `flow worker start`)
OWNER_USER_PREFIX = "ecw-"  # + 12 hex digits of the owner's name: valid whatever the owner's name is


def system_user(name: str, why: str, groups: tuple[str, ...] = ()) -> tuple[int, int]:
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
        extra = ["--groups", ",".join(groups)] if groups else []
        for _ in range(20):  # useradd fails while another one holds /etc/passwd's lock
            rc, out = run([useradd, "--system", "--no-create-home", *group, *extra, "--shell", "/usr/sbin/nologin",
                           name], "useradd")
            if rc != 1 or "lock" not in out:
                break
            time.sleep(0.1)
        if rc not in (0, 9):  # 9: created meanwhile by another process
            raise ServiceUnavailable(f"could not create the system user {name!r} {why}: "
                                     f"{last_meaningful_line(out)}; create it with: useradd --system {name}") from None
        pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


def worker_user() -> tuple[int, int]:
    """uid and gid of WORKER_USER (as root only: creating users needs root)."""
    return system_user(WORKER_USER, "processor code runs as")


def owner_user_name(owner: str) -> str:
    return OWNER_USER_PREFIX + hashlib.sha256(owner.encode()).hexdigest()[:12]


def owner_user(owner: str) -> tuple[str, int, int, int]:
    """The worker user of the ElasticCode user `owner`: (name, uid, its own gid, WORKER_USER's gid),
    created on first use in WORKER_USER's group (as root only)."""
    _, shared_gid = worker_user()
    name = owner_user_name(owner)
    uid, gid = system_user(name, f"the processors of {owner!r} run as", groups=(WORKER_USER,))
    return name, uid, gid, shared_gid


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
