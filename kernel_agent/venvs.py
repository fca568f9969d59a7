"""Per-processor virtual environments, and the helpers the code cache shares with them.

A processor's worker must run in its own interpreter environment: its requirements may clash
with the agent's, and a bad requirement must not break the agent. One venv serves every
processor with the same (Python, runtime versions, requirements), so it is keyed by those and
built once per machine. The ElasticCode package itself is linked in, never installed, so the
worker always runs the agent's own runtime code.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import elasticcode
from elasticcode.embedded.files import readable_by_others, traversable_by_others
from elasticcode.errors import ElasticCodeError

# The messaging stack whose versions must match the agent's (wire protocol, task semantics).
RUNTIME_PACKAGES = ("celery", "kombu", "billiard", "vine", "redis", "hiredis", "cryptography", "cffi", "pycparser")
READY = ".elasticcode-ready"  # written last: a venv without it is an interrupted build
VENV_FORMAT = 1  # bump when the layout of a built venv changes


class CodeError(ElasticCodeError):
    """Processor code could not be fetched, checked out, installed or imported."""


def run(argv: Sequence[str], *, timeout: float, what: str, cwd: Path | None = None,
        env: dict[str, str] | None = None,
        fix: str = "check the network and the repository or package index, then retry",
        **popen) -> subprocess.CompletedProcess:
    """Run without a shell; on timeout kill the whole process group (git and pip spawn helpers
    that would otherwise keep the pipes open and make us wait forever). `popen`: user, group..."""
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, **popen)
    except FileNotFoundError:
        raise CodeError(f"cannot run {argv[0]} for {what}: it is not installed or was removed; install it") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CodeError(f"{what} did not finish within {timeout:g} s: {fix}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 3600) -> Iterator[None]:
    """flock, not lockf: flock conflicts between separate opens, so it also serialises
    threads of one agent, not only agents on one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CodeError(f"waited {timeout:g} s for {path}: another agent is still building; "
                                    "retry later or stop that agent") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def clear_leftovers(root: Path, name: str) -> None:
    """Temp dirs of builds killed midway (the lock holder is the only one who may touch them)."""
    for old in root.glob(f".tmp-{name}-*"):
        shutil.rmtree(old, ignore_errors=True)


def parse_requirements(text: str | None, origin: str) -> list[str]:
    """Split pip specifiers into argv items. Anything starting with '-' is refused: options
    such as --index-url, -e or -r would let a processor redirect or widen what gets installed."""
    items: list[str] = []
    for raw in (text or "").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        # markers (';') and direct references (' @ ') hold spaces; plain specifiers may share a line
        parts = [line] if (";" in line or " @ " in line) else line.split()
        for item in parts:
            if item.startswith("-"):
                raise CodeError(f"requirement {item!r} in {origin} is a pip option: give package "
                                "specifiers only (indexes are configured by the node's admin)")
            if any(ord(c) < 32 for c in item):
                raise CodeError(f"requirement {item!r} in {origin} holds control characters: fix it")
            items.append(item)
    return items


def runtime_pins() -> list[str]:
    pins = []
    for name in RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}{'[redis]' if name == 'celery' else ''}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pins


def base_python() -> str:
    """The interpreter the agent's own venv (if any) was made from: venvs nest badly."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _reachable_python(candidate: str) -> bool:
    """A Python of the agent's major.minor that another user can run, standard library included."""
    path = Path(candidate).resolve()
    if not readable_by_others(path, executable=True):
        return False
    done = subprocess.run([str(path), "-I", "-c", "import sys, sysconfig; print(sys.version_info[0], "
                           "sys.version_info[1]); print(sysconfig.get_path('stdlib'))"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    lines = done.stdout.split("\n")
    return (done.returncode == 0 and lines[0].split() == [str(sys.version_info[0]), str(sys.version_info[1])]
            and traversable_by_others(Path(lines[1])))


@functools.lru_cache(maxsize=1)
def worker_python() -> str:
    """As root, the interpreter workers' venvs are made from: one the worker user can run. The
    agent's base when it is in public folders (a Python under /root is not); else
    ELASTICCODE_WORKER_PYTHON, else the system's python of the same major.minor."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [os.environ.get("ELASTICCODE_WORKER_PYTHON", ""), base_python(),
                  *(f"{d}/python{version}" for d in ("/usr/local/bin", "/usr/bin", "/bin"))]
    for candidate in dict.fromkeys(c for c in candidates if c):
        if Path(candidate).is_file() and _reachable_python(candidate):
            return candidate
    raise CodeError(f"no Python {version} that the worker user can run: the agent's ({base_python()}) is in a "
                    f"folder other users cannot enter; install python{version} system-wide (e.g. apt install "
                    f"python{version}) or set ELASTICCODE_WORKER_PYTHON to one in public folders")


def open_tree(root: Path) -> None:
    """Make a tree we just built readable (never writable) by others: the worker user reads it.
    Links are left alone (their targets are not ours)."""
    for d, _dirs, names in os.walk(root):
        os.chmod(d, (os.stat(d).st_mode & 0o7777) | 0o055)
        for name in names:
            p = os.path.join(d, name)
            if not os.path.islink(p):
                mode = os.stat(p).st_mode & 0o7777
                os.chmod(p, mode | 0o044 | (0o011 if mode & 0o100 else 0))


def find_uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv  # the PyPI package ships the binary

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return None


def venv_key(requirements: Sequence[str], base: str | None = None) -> tuple[str, dict]:
    material = {
        "format": VENV_FORMAT,
        "python": sys.version,
        "base": base or base_python(),
        "runtime": runtime_pins(),
        "elasticcode": str(Path(elasticcode.__file__).resolve().parent),
        "requirements": sorted(set(requirements)),
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    return f"py{sys.version_info[0]}{sys.version_info[1]}-{digest}", material


def site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def last_error_line(output: str) -> str:
    """The line a person needs from pip's or uv's output, not the traceback around it."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    # uv says "error: No solution found" then the reason, as "cause: ..." (or "╰─▶ ..." on a tty)
    causes = [ln.split("╰─▶", 1)[1] if "╰─▶" in ln else ln[6:] for ln in lines
              if "╰─▶" in ln or ln.startswith("cause:")]
    if causes:
        return causes[-1].strip()[:400]
    errors = [ln for ln in lines if ln.startswith(("ERROR:", "error:"))]
    if errors:
        return errors[-1].split(":", 1)[1].strip()[:400]
    meaningful = [ln for ln in lines if not ln.startswith(("WARNING", "warning", "hint", "note"))]
    return (meaningful or lines or ["no output"])[-1].lstrip("×│ ").strip()[:400]


def ensure_venv(root: Path, requirements: Sequence[str], *, installer: str = "auto",
                timeout: float = 900, progress: Callable[[str], None] = lambda m: None,
                base: str | None = None) -> Path:
    """The venv for these requirements under root, built once; cheap when it exists.
    `base`: the interpreter to make it from (default: the agent's own base)."""
    key, material = venv_key(requirements, base)
    venv = root / key
    if (venv / READY).exists():
        return venv
    with file_lock(root / ".locks" / f"{key}.lock", timeout=timeout + 300):
        if (venv / READY).exists():  # another agent or thread finished it while we waited
            return venv
        # Built in place, not in a temp dir renamed after: venv scripts and pip's records hold
        # absolute paths. READY, written last, makes the finished venv visible atomically.
        shutil.rmtree(venv, ignore_errors=True)
        try:
            _build(venv, runtime_pins() + list(requirements), installer, timeout, progress, material["base"])
            link = site_packages(venv) / "elasticcode"
            link.symlink_to(material["elasticcode"], target_is_directory=True)
            open_tree(venv)
            tmp = venv / f"{READY}.tmp"
            tmp.write_text(json.dumps(material, indent=1))
            os.replace(tmp, venv / READY)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
    return venv


SECRET_ENV = ("ELASTICCODE_", "PG", "DATABASE_URL")  # never handed to installers (packages' build scripts run)


def _build(venv: Path, packages: list[str], installer: str, timeout: float,
           progress: Callable[[str], None], base: str) -> None:
    uv = find_uv() if installer in ("auto", "uv") else None
    if installer == "uv" and not uv:
        raise CodeError("installer 'uv' is not available: pip install uv, or use installer='pip'")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith(SECRET_ENV)}
    # uv trusts only its bundled roots unless told otherwise; pip trusts the system's. Use the
    # system store for both, so a machine behind a TLS-inspecting proxy works the same either way.
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", UV_PYTHON_DOWNLOADS="never",
               UV_SYSTEM_CERTS="1", UV_NATIVE_TLS="1")
    python = str(venv / "bin" / "python")
    progress(f"building virtual environment {venv.name} with {'uv' if uv else 'pip'}: {' '.join(packages)}")
    if uv:
        create = [uv, "venv", "--quiet", "--python", base, str(venv)]
        install = [uv, "pip", "install", "--quiet", "--python", python, "--", *packages]
    else:
        create = [base, "-m", "venv", str(venv)]
        install = [python, "-m", "pip", "install", "--quiet", "--", *packages]
    done = run(create, timeout=120, what="creating a virtual environment", env=env, cwd=venv.parent)
    if done.returncode != 0:
        raise CodeError(f"cannot create a virtual environment at {venv}: "
                        f"{last_error_line(done.stderr + done.stdout)}")
    done = run(install, timeout=timeout, what="installing requirements", env=env, cwd=venv.parent)
    if done.returncode != 0:
        raise CodeError("requirements of the processor failed to install: "
                        f"{last_error_line(done.stderr + done.stdout)} (fix the requirements)")
