"""What processor code runs as: which OS user, with which environment, in which folders.

Processor code is the least trusted thing on a node. It gets no database credential and no
ElasticCode configuration: its environment is built from nothing (never copied from the
agent's), and its files are the processor's checkout and venv, its own run folder and the
spec (broker and backend URLs: the worker needs them). When the agent runs as root, the
workers of each ElasticCode user run as a system user of that owner's (`ecw-<hash>`, created
on first use, see `elasticcode.embedded.users`), in the group `elasticcode-worker` that opens
the shared folders: they can read none of the agent's home, and no other owner's checkouts,
specs or processes. When the agent runs as another user, workers run as that same user and can
read what it can: the agent says so in one line at start.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from elasticcode.embedded.files import VAR_ROOT, is_root, make_dir
from elasticcode.embedded.users import WORKER_USER, owner_user, worker_user

log = logging.getLogger("elasticcode.agent")

SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
KEPT = ("LANG", "LANGUAGE", "TZ")  # plus LC_*: nothing else is inherited from the agent


@dataclass(frozen=True)
class Sandbox:
    user: str
    uid: int
    gid: int  # the user's own group: what its specs and checkouts are opened to
    separate: bool  # True: a user of their own (the agent is root); False: the agent's own user
    shared_gid: int | None = None  # the group of every worker user (shared folders), when not `gid`

    @classmethod
    def for_agent(cls) -> Sandbox:
        """As root, the worker system user (created if missing); otherwise the agent's own user."""
        if is_root():
            uid, gid = worker_user()
            return cls(WORKER_USER, uid, gid, True)
        return cls.own_user()

    @classmethod
    def for_owner(cls, owner: str) -> Sandbox:
        """As root, the worker user of ElasticCode user `owner` (created if missing); otherwise the
        agent's own user."""
        if is_root():
            name, uid, gid, shared_gid = owner_user(owner)
            return cls(name, uid, gid, True, shared_gid)
        return cls.own_user()

    @property
    def group(self) -> int:
        """The group every worker user is in: shared folders are opened to it."""
        return self.shared_gid if self.shared_gid is not None else self.gid

    @classmethod
    def own_user(cls) -> Sandbox:
        """Workers as this process's own user (what a non-root agent does; also for tests)."""
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # a container uid with no passwd entry
            name = f"uid {os.getuid()}"
        return cls(name, os.getuid(), os.getgid(), False)

    def announce(self) -> None:
        if self.separate:
            log.info("workers run as a system user per owner (ecw-<hash>, in the group %s): processor code cannot "
                     "read the agent's home or configuration, nor another owner's code, specs or workers", self.user)
        else:
            log.warning("workers run as %s, the agent's own user: processor code can read what that user can "
                        "(run the agent as root to run workers as %s)", self.user, WORKER_USER)

    def popen_kwargs(self) -> dict:
        """For subprocess.Popen: drop to the worker user, its own group and the workers' group only."""
        if not self.separate:
            return {}
        return {"user": self.uid, "group": self.gid,
                "extra_groups": [self.shared_gid] if self.shared_gid is not None else []}

    def env(self, venv_bin: Path, home: Path, tmpdir: Path | None = None) -> dict[str, str]:
        """A worker's whole environment, built from nothing: never ELASTICCODE_*, PG*, DATABASE_URL..."""
        env = {
            "PATH": os.pathsep.join([str(venv_bin), *SYSTEM_PATH]),
            "HOME": str(home),
            "TMPDIR": str(tmpdir or home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if self.separate:
            env.update(USER=self.user, LOGNAME=self.user)
        for key, value in os.environ.items():
            if key in KEPT or key.startswith("LC_"):
                env[key] = value
        return env

    def owned_dir(self, path: Path, mode: int = 0o700) -> Path:
        """`path` as a real folder of the worker user (mode `mode`), made if missing.

        The folder is the worker's, so it may have put anything there; a symlink in its place is
        removed, never followed (chown and chmod here do not follow links)."""
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                path.unlink()
        path.mkdir(mode=mode, exist_ok=True)
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise OSError(f"{path} is not a folder")
        if self.separate:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)
        os.chmod(path, mode)
        return path

    def readable_file(self, path: Path, text: str) -> None:
        """Write `text` to `path` (atomically, never through a link): 0600, or as root 0640 to the
        worker user's own group, so that only the agent and that user's workers can read it."""
        tmp = path.with_name(path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if self.separate:
                os.fchown(fd, 0, self.gid)
                os.fchmod(fd, 0o640)
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def run_dir(self, path: Path) -> Path:
        """The agent's folder of workers' specs, logs and pidfiles, made if missing: as root (under
        /var/lib/elasticcode, ours) workers may enter it (0710 to their group), not list or write it."""
        created = not path.is_dir()
        if self.separate:
            make_dir(VAR_ROOT, 0o755)
            make_dir(path.parent, 0o711)  # the agents' run folders: traversable, not listable
        path.mkdir(parents=True, exist_ok=True)
        if self.separate:
            os.chown(path, 0, self.group)
            os.chmod(path, 0o710)
        elif created:
            os.chmod(path, 0o700)
        return path


_AGENT: Sandbox | None = None
_OWNERS: dict[str, Sandbox] = {}


def agent_sandbox() -> Sandbox:
    """This process's sandbox for workers (as root, creating the worker user on first use)."""
    global _AGENT
    if _AGENT is None:
        _AGENT = Sandbox.for_agent()
    return _AGENT


def owner_sandbox(owner: str | None) -> Sandbox:
    """The sandbox of `owner`'s workers on this node (the agent's when there is no owner)."""
    if not owner:
        return agent_sandbox()
    if owner not in _OWNERS:
        _OWNERS[owner] = Sandbox.for_owner(owner)
    return _OWNERS[owner]
