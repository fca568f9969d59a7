"""Processor code from git: a mirror per repository, a checkout per commit, a venv per requirements.

Code never comes from the client, only from git at an exact commit, so what a worker runs is
always named by a sha. Everything is cached and reused across agent restarts; each build runs
under a file lock so agents sharing a machine never build twice. Mirrors stay in the agent's
home (only the agent uses them). Checkouts and venvs are what workers run: under the home too
when the agent is not root; as root (workers run as `elasticcode-worker`, who cannot enter the
home) under /var/lib/elasticcode/code, owned by root, readable by the worker group only.
Git runs without a shell, without prompts and with a timeout: a URL that wants credentials
fails with a message instead of hanging the agent.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from elasticcode.catalog.repos import check_gitrepo
from elasticcode.embedded.files import VAR_ROOT, make_dir
from elasticcode.embedded.users import owner_user_name
from elasticcode.errors import ElasticCodeError

from . import modcheck
from .sandbox import Sandbox, agent_sandbox, owner_sandbox
from .venvs import CodeError, clear_leftovers, ensure_venv, file_lock, open_tree, parse_requirements, run, worker_python

__all__ = ["CodeCache", "CodeError", "CodeSpec", "PreparedCode"]

HEX = re.compile(r"^[0-9a-f]{4,40}$")
GIT_TIMEOUT = 300
CODE_ROOT = VAR_ROOT / "code"  # as root: checkouts and venvs, root-owned, readable by the worker group


@dataclass(frozen=True)
class CodeSpec:
    gitrepo: str
    branch: str | None = None
    commit: str | None = None  # hex sha or prefix; wins over branch/tag
    tag: str | None = None
    requirements: str | None = None  # pip specifiers separated by spaces/newlines
    modulepath: str | None = None  # repo-relative folder put on sys.path (default: repo root)
    owner: str | None = None  # whose code: as root, its checkout is readable by that owner's workers only


@dataclass(frozen=True)
class PreparedCode:
    commit: str  # full sha actually checked out
    code_dir: Path
    import_path: Path
    python: Path
    venv_dir: Path
    owner: str | None = None


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    # No prompt may ever wait for a person: an agent has nobody at its terminal.
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", SSH_ASKPASS="true", GCM_INTERACTIVE="never")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=30")
    return env


def _git(*args: str, what: str, timeout: float = GIT_TIMEOUT):
    return run(["git", "-c", "protocol.ext.allow=never", *args], timeout=timeout, what=what, env=_git_env())


def _clone_problem(stderr: str) -> str:
    low = stderr.lower()
    if "not found" in low or "does not exist" in low or "not appear to be a git repository" in low:
        return "repository not found (check -g/--gitrepo)"
    if any(s in low for s in ("authentication", "could not read username", "terminal prompts disabled",
                              "permission denied", "could not read password")):
        return "access denied (give the agent a credential helper or SSH key, or make the repository readable)"
    if "could not resolve host" in low or "connection refused" in low or "timed out" in low:
        return "host unreachable (check the URL and the network)"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return (lines[-1] if lines else "git failed") + " (check -g/--gitrepo)"


class CodeCache:
    """Turns a CodeSpec into a checkout at an exact commit plus a ready venv."""

    def __init__(self, home: Path, allowlist: tuple[str, ...] = (), *, installer: str | None = None,
                 install_timeout: float = 900, sandbox: Sandbox | None = None, shared_root: Path | None = None):
        self.home = Path(home)
        self.allowlist = tuple(allowlist)
        self.sandbox = sandbox or agent_sandbox()  # who runs the code: it must be able to read it
        # Checkouts and venvs: where the workers' user can read them (see the module's docstring).
        self.shared_root = Path(shared_root) if shared_root else (CODE_ROOT if self.sandbox.separate else self.home)
        self._shared_ready = False
        # "auto" (uv when available, else pip), "uv" or "pip"; admins may force one per node
        self.installer = installer or os.environ.get("ELASTICCODE_INSTALLER", "auto")
        if self.installer not in ("auto", "uv", "pip"):
            raise CodeError(f"installer {self.installer!r} is unknown: use auto, uv or pip (ELASTICCODE_INSTALLER)")
        self.install_timeout = install_timeout

    # -- git ------------------------------------------------------------------------------

    def _url(self, spec: CodeSpec) -> str:
        try:
            return check_gitrepo(spec.gitrepo, self.allowlist)
        except CodeError:
            raise
        except ElasticCodeError as exc:
            raise CodeError(str(exc)) from None

    @staticmethod
    def _repohash(url: str) -> str:
        return hashlib.sha256(url.encode()).hexdigest()[:16]

    def _mirror(self, url: str, progress: Callable[[str], None]) -> tuple[Path, bool]:
        """The bare mirror of url, cloned on first use. Returns (path, just_cloned)."""
        root = self.home / "git"
        mirror = root / f"{self._repohash(url)}.git"
        if mirror.is_dir():
            return mirror, False
        with file_lock(root / ".locks" / f"{mirror.name}.lock"):
            if mirror.is_dir():
                return mirror, False
            progress(f"cloning {url}")
            clear_leftovers(root, mirror.name)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{mirror.name}-", dir=root))
            try:
                done = _git("clone", "--bare", "--quiet", "--", url, str(tmp), what=f"cloning {url}")
                if done.returncode != 0:
                    raise CodeError(f"cannot clone {url}: {_clone_problem(done.stderr)}")
                # Branches and tags only: hosts' extra refs (pull requests) are not processor code.
                _git("--git-dir", str(tmp), "config", "--replace-all", "remote.origin.fetch",
                     "+refs/heads/*:refs/heads/*", what="configuring the mirror")
                _git("--git-dir", str(tmp), "config", "--add", "remote.origin.fetch",
                     "+refs/tags/*:refs/tags/*", what="configuring the mirror")
                os.rename(tmp, mirror)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return mirror, True

    def _fetch(self, mirror: Path, url: str, spec: CodeSpec, progress: Callable[[str], None]) -> None:
        progress(f"fetching {url}")
        with file_lock(mirror.parent / ".locks" / f"{mirror.name}.lock"):
            done = _git("--git-dir", str(mirror), "fetch", "--prune", "--force", "--quiet", "origin",
                        what=f"fetching {url}")
            if done.returncode != 0:
                raise CodeError(f"cannot fetch {url}: {_clone_problem(done.stderr)}")
            if not (spec.commit or spec.branch or spec.tag):
                # The remote's default branch can change; a bare clone only learns it once.
                done = _git("--git-dir", str(mirror), "ls-remote", "--symref", "origin", "HEAD",
                            what=f"reading the default branch of {url}")
                head = re.search(r"^ref: (refs/heads/\S+)\tHEAD$", done.stdout, re.M)
                if done.returncode == 0 and head:
                    _git("--git-dir", str(mirror), "symbolic-ref", "HEAD", head.group(1), what="setting HEAD")

    def _lookup(self, mirror: Path, url: str, spec: CodeSpec) -> str | None:
        """Full sha the spec names in the mirror as it is now, or None."""
        if spec.commit:
            commit = spec.commit.strip().lower()
            if not HEX.match(commit):
                raise CodeError(f"commit {spec.commit!r} is not a hex sha: give e.g. --commit 1a2b3c4")
            rev = f"{commit}^{{commit}}"
        elif spec.tag or spec.branch:
            kind, name = ("tags", spec.tag) if spec.tag else ("heads", spec.branch)
            ref = f"refs/{kind}/{name.strip()}"
            if _git("check-ref-format", ref, what="checking a ref name").returncode != 0:
                raise CodeError(f"{'tag' if spec.tag else 'branch'} {name!r} is not a valid git ref name: fix it")
            rev = f"{ref}^{{commit}}"
        else:
            rev = "HEAD^{commit}"
        done = _git("--git-dir", str(mirror), "rev-parse", "--verify", rev, what="resolving a revision")
        if "ambiguous" in done.stderr:
            raise CodeError(f"commit {spec.commit!r} is ambiguous in {url}: give more digits of the sha")
        sha = done.stdout.strip()
        return sha if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha) else None

    def _missing(self, url: str, spec: CodeSpec) -> CodeError:
        if spec.commit:
            return CodeError(f"commit {spec.commit!r} is not in {url}: push it or fix --commit")
        if spec.tag:
            return CodeError(f"tag {spec.tag!r} is not in {url}: push it (git push --tags) or fix --tag")
        if spec.branch:
            return CodeError(f"branch {spec.branch!r} is not in {url}: push it or fix --branch")
        return CodeError(f"{url} has no commits on its default branch: push one or give --branch")

    def _sha(self, spec: CodeSpec, progress: Callable[[str], None], *, always_fetch: bool) -> tuple[str, str]:
        url = self._url(spec)
        mirror, fresh = self._mirror(url, progress)
        # A pinned commit already mirrored cannot change: no network needed to use it again.
        if spec.commit and not always_fetch:
            sha = self._lookup(mirror, url, spec)
            if sha:
                return url, sha
        if not fresh:  # a clone made just now is as new as a fetch
            self._fetch(mirror, url, spec, progress)
        sha = self._lookup(mirror, url, spec)
        if not sha:
            raise self._missing(url, spec)
        return url, sha

    def resolve(self, spec: CodeSpec) -> str:
        """Full sha of the spec's commit, tag, branch head or default head, after a fetch."""
        return self._sha(spec, lambda m: None, always_fetch=True)[1]

    @property
    def code_root(self) -> Path:
        return self.shared_root / "code"

    @property
    def venv_root(self) -> Path:
        return self.shared_root / "venvs"

    def _shared(self) -> None:
        """As root, CODE_ROOT (ours): root-owned, entered by the worker group only."""
        if self._shared_ready or not self.sandbox.separate or self.shared_root != CODE_ROOT:
            return
        make_dir(VAR_ROOT, 0o755)
        make_dir(CODE_ROOT, 0o750)
        os.chown(CODE_ROOT, 0, self.sandbox.gid)
        os.chmod(CODE_ROOT, 0o750)
        self._shared_ready = True

    def _checkout(self, url: str, sha: str, progress: Callable[[str], None], owner: str | None = None) -> Path:
        self._shared()
        root = self.code_root
        reader = self.sandbox_of(owner)
        private = reader.separate and reader.shared_gid is not None  # an owner's worker user, not the shared one
        # One checkout per owner: a folder opened to one owner's group only, never to another's.
        code_dir = root / (f"{self._repohash(url)}-{sha}-{owner_user_name(owner)}" if private and owner
                           else f"{self._repohash(url)}-{sha}")
        if code_dir.is_dir():
            return code_dir
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root / ".locks" / f"{code_dir.name}.lock"):
            if code_dir.is_dir():
                return code_dir
            progress(f"checking out {sha[:12]}")
            clear_leftovers(root, code_dir.name)
            mirror = self.home / "git" / f"{self._repohash(url)}.git"
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{code_dir.name}-", dir=root))
            try:
                # A local clone hardlinks the mirror's objects: cheap, and independent of later
                # fetches and gc in the mirror (unlike --shared or a worktree).
                done = _git("clone", "--no-checkout", "--quiet", "--", str(mirror), str(tmp), what="cloning the mirror")
                if done.returncode == 0:
                    done = _git("-C", str(tmp), "-c", "advice.detachedHead=false", "-c", "core.hooksPath=/dev/null",
                                "checkout", "--quiet", "--detach", sha, what=f"checking out {sha}")
                if done.returncode != 0:
                    raise CodeError(f"cannot check out {sha} of {url}: {_clone_problem(done.stderr)}")
                open_tree(tmp)  # readable (not writable) by the workers' user, whatever the umask
                if private:
                    os.chown(tmp, 0, reader.gid)
                    os.chmod(tmp, 0o750)  # the owner's workers enter it; other owners' cannot
                os.rename(tmp, code_dir)  # all or nothing: a code_dir that exists is complete
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return code_dir

    # -- preparation ---------------------------------------------------------------------

    def prepare(self, spec: CodeSpec, progress: Callable[[str], None] = lambda msg: None) -> PreparedCode:
        """Checkout and venv for spec; the second call for a pinned commit touches neither network nor pip."""
        url, sha = self._sha(spec, progress, always_fetch=False)
        code_dir = self._checkout(url, sha, progress, spec.owner)
        modulepath = (spec.modulepath or "").strip().strip("/")
        if modulepath and (Path(modulepath).is_absolute() or ".." in Path(modulepath).parts):
            raise CodeError(f"modulepath {spec.modulepath!r} leaves the repository: give a folder inside it")
        import_path = code_dir / modulepath if modulepath else code_dir
        if not import_path.is_dir():
            raise CodeError(f"modulepath {spec.modulepath!r} is not a folder of {url} at {sha[:12]}: fix --modulepath")
        requirements = parse_requirements(spec.requirements, "the processor's requirements")
        for candidate in dict.fromkeys([import_path / "requirements.txt", code_dir / "requirements.txt"]):
            if candidate.is_file():
                requirements += parse_requirements(candidate.read_text(errors="replace"),
                                                   f"{candidate.relative_to(code_dir)} at {sha[:12]}")
                break
        self._shared()
        venv = ensure_venv(self.venv_root, requirements, installer=self.installer, timeout=self.install_timeout,
                           progress=progress, base=worker_python() if self.sandbox.separate else None)
        return PreparedCode(commit=sha, code_dir=code_dir, import_path=import_path,
                            python=venv / "bin" / "python", venv_dir=venv, owner=spec.owner)

    def inspect_module(self, prepared: PreparedCode, module: str, functions: list[str],
                       timeout: float = 60) -> modcheck.ModuleReport:
        """What the module's functions are (see kernel_agent/modcheck.py)."""
        return modcheck.check_module(prepared.python, prepared.import_path, module, functions,
                                     self.sandbox_of(prepared.owner), timeout)

    def sandbox_of(self, owner: str | None) -> Sandbox:
        """Who runs `owner`'s code: its own worker user when this cache's sandbox is the node's
        (the agent's), else this cache's sandbox (tests, `flow worker start`)."""
        if owner and self.sandbox is agent_sandbox() and self.sandbox.separate:
            return owner_sandbox(owner)
        return self.sandbox

    def check_module(self, prepared: PreparedCode, module: str, functions: list[str],
                     timeout: float = 60) -> dict[str, str]:
        """{function: problem} for functions the module lacks."""
        return self.inspect_module(prepared, module, functions, timeout).problems
