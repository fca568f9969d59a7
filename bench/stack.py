"""The embedded ElasticCode stack the harness brings up for itself (`flow up` in a temporary
ELASTICCODE_HOME), and the git repository the benchmark functions are deployed from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
# What `flow` must not pick up from the caller's environment: the stack is ours alone.
FOREIGN = ("ELASTICCODE_DB", "ELASTICCODE_ADMIN_DB", "ELASTICCODE_SERVICE_DB", "ELASTICCODE_BROKER", "ELASTICCODE_BACKEND",
           "ELASTICCODE_INI")


def flow(*args: str, timeout: float = 300) -> str:
    """Run the `flow` CLI (the one next to this Python); raise with its output when it fails."""
    exe = Path(sys.executable).parent / "flow"  # the venv's, whatever PATH says
    cmd = [str(exe) if exe.exists() else shutil.which("flow") or "flow", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"flow {' '.join(args)} failed ({done.returncode}): {(done.stdout + done.stderr).strip()[-2000:]}")
    return done.stdout


class Stack:
    """`flow up` in `home`; `down()` stops it and deletes its data (also what it keeps outside home)."""

    def __init__(self, home: Path):
        self.home = home
        self.settings = None

    def up(self):
        os.environ["ELASTICCODE_HOME"] = str(self.home)
        for var in FOREIGN:
            os.environ.pop(var, None)
        flow("up", timeout=300)
        from elasticcode import config

        self.settings = config.load()
        return self.settings

    def down(self) -> None:
        try:
            flow("down", timeout=120)
        except Exception:  # noqa: BLE001 - purge stops what is left
            pass
        from elasticcode import embedded

        embedded.purge(self.home)
        broker = getattr(self.settings, "broker", None) or ""
        if broker.startswith(("redis+socket://", "unix://")):
            # The socket folder the stack made outside home (as root: /var/lib/elasticcode/sockets/<hash>).
            folder = Path(urlsplit(broker).path).parent
            try:
                folder.rmdir()  # only when empty: never anything else
            except OSError:
                pass


def make_repo(path: Path) -> Path:
    """A git repository holding benchfuncs.py, committed: what the processors are deployed from."""
    import git

    path.mkdir(parents=True)
    shutil.copy(FIXTURES / "benchfuncs.py", path / "benchfuncs.py")
    repo = git.Repo.init(path, initial_branch="main")
    repo.git.add(A=True)
    actor = git.Actor("bench", "bench@localhost")
    repo.index.commit("bench", author=actor, committer=actor)
    return path
