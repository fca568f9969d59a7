"""Turn Python source into a processor: commit it to a git repository, pin the processor to that
commit, and make one socket per public function.

This is what `%%flow processor NAME` does with a notebook cell. The trusted-code model holds:
the source is never executed here; agents load it from git at the commit.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
from sqlalchemy import select

from .. import catalog
from ..config import Settings
from ..db import model as m
from ..db.engine import session_scope
from ..errors import ElasticCodeError, NotFound

NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
ACTOR = git.Actor("ElasticCode notebook", "notebook@elasticcode.local")


@dataclass
class Published:
    processor: str
    commit: str
    repository: str
    functions: list[str]
    sockets: list[str]
    removed: list[str] = field(default_factory=list)
    changed: bool = True

    def __repr__(self) -> str:
        return (f"processor {self.processor} at commit {self.commit[:12]} ({self.repository}); "
                f"sockets: {', '.join(self.sockets)}" + (f"; removed: {', '.join(self.removed)}" if self.removed else ""))

    def _repr_html_(self) -> str:
        from .reprs import html_table

        rows = [{"socket": s, "function": f} for s, f in zip(self.sockets, self.functions, strict=False)]
        note = "new commit" if self.changed else "unchanged (same source)"
        return (f"<b>processor {self.processor}</b> at commit <code>{self.commit[:12]}</code> ({note})"
                + html_table(rows) + (f"<p>removed sockets: {', '.join(self.removed)}</p>" if self.removed else ""))


def public_functions(source: str) -> list[str]:
    """Top-level functions not starting with `_`, found by parsing (the code is not run here)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ElasticCodeError(f"the cell has a syntax error at line {exc.lineno}: {exc.msg}") from None
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    if not names:
        raise ElasticCodeError("the cell defines no public function: each top-level `def name(...)` becomes a socket")
    return names


def _commit(repo_dir: Path, module: str, source: str, requirements: str | None, remote: str | None) -> tuple[str, bool]:
    repo_dir.mkdir(parents=True, exist_ok=True)
    repo = git.Repo(repo_dir) if (repo_dir / ".git").exists() else git.Repo.init(repo_dir, initial_branch="main")
    (repo_dir / f"{module}.py").write_text(source if source.endswith("\n") else source + "\n", encoding="utf-8")
    wanted = " ".join((requirements or "").split())
    req_file = repo_dir / "requirements.txt"
    if wanted:
        req_file.write_text("\n".join(wanted.split()) + "\n", encoding="utf-8")
    elif req_file.exists():
        req_file.unlink()
    repo.git.add(A=True)
    changed = not repo.head.is_valid() or bool(repo.index.diff("HEAD"))
    if changed:
        repo.index.commit(f"%%flow processor {module}", author=ACTOR, committer=ACTOR)
    if remote:
        if "origin" not in [r.name for r in repo.remotes]:
            repo.create_remote("origin", remote)
        elif repo.remotes.origin.url != remote:
            repo.remotes.origin.set_url(remote)
        try:
            repo.remotes.origin.push("HEAD:refs/heads/main")
        except git.GitCommandError as exc:
            raise ElasticCodeError(f"cannot push the cell to {remote}: {str(exc.stderr).strip().splitlines()[-1:]}") from None
    return repo.head.commit.hexsha, changed


def publish_processor(settings: Settings, name: str, source: str, concurrency: int | None = None,
                      requirements: str | None = None, queue: str | None = None, remote: str | None = None,
                      min_concurrency: int | None = None, hostname: str | None = None) -> Published:
    """Commit `source` as module `name` and create or update processor `name` pinned to that commit."""
    if not NAME.match(name or ""):
        raise ElasticCodeError(f"processor name {name!r} must be a Python module name (lower case, digits, _)")
    functions = public_functions(source)
    repo_dir = settings.home / "processors" / name
    sha, changed = _commit(repo_dir, name, source, requirements, remote)
    gitrepo = remote or str(repo_dir)
    queue = queue or f"{name}.queue"
    wanted = {f"{name}.{f}": f for f in functions}
    removed: list[str] = []
    with session_scope(settings.require_db()) as s:
        # Deploying a cell means running it, also after `%flow proc stop`.
        values: dict[str, Any] = {"module": name, "gitrepo": gitrepo, "commit": sha, "requirements": requirements or None,
                                  "requested_status": "running"}
        if concurrency is not None:
            values["concurrency"] = concurrency
        if min_concurrency is not None:
            values["min_concurrency"] = min_concurrency
        if hostname is not None:
            values["hostname"] = hostname
        try:
            catalog.find(s, "processor", name)
            proc = catalog.update(s, "processor", name, {k: v for k, v in values.items() if v is not None},
                                  settings.repositories)
            if not requirements and proc.requirements:
                proc.requirements = None
        except NotFound:
            proc = catalog.add(s, "processor", {"name": name, **values}, settings.repositories)
        existing = {sock.name: sock for sock in s.execute(select(m.Socket).where(m.Socket.processor_id == proc.id)).scalars()}
        for socket_name, function in wanted.items():
            if socket_name in existing:
                if existing[socket_name].task.function != function or existing[socket_name].queue.name != queue:
                    catalog.update(s, "socket", socket_name, {"function": function, "queue": queue}, create_queues=True)
            else:
                catalog.add(s, "socket", {"name": socket_name, "processor": name, "queue": queue, "function": function},
                            create_queues=True)
        for socket_name in sorted(set(existing) - set(wanted)):
            catalog.delete(s, "socket", socket_name)
            removed.append(socket_name)
    return Published(name, sha, gitrepo, functions, list(wanted), removed, changed)
