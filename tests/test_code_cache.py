"""The agent's code cache: real git repositories, real venvs built by uv or pip, no mocks."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import git
import pytest

from kernel_agent.code import CODE_ROOT, CodeCache, CodeError, CodeSpec, PreparedCode
from kernel_agent.sandbox import Sandbox, agent_sandbox

AUTHOR = git.Actor("t", "t@example.com")


def commit(repo_dir: Path, files: dict[str, str], message: str = "change") -> str:
    repo = git.Repo(repo_dir) if (repo_dir / ".git").exists() else git.Repo.init(repo_dir, initial_branch="main")
    for name, text in files.items():
        (repo_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / name).write_text(text)
    repo.index.add(list(files))
    return repo.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha


def venv_python(prepared: PreparedCode, code: str) -> str:
    done = subprocess.run([str(prepared.python), "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def isolated(home: Path, **kwargs) -> CodeCache:
    """A cache of its own (checkouts and venvs under `home`, code run as this user): for tests that
    count builds, which the machine-wide cache of a root agent would share across tests."""
    return CodeCache(home, shared_root=home, sandbox=Sandbox.own_user(), **kwargs)


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory) -> Path:
    """One state dir for the tests that only need some venv: a pip build is slow, so share it."""
    return tmp_path_factory.mktemp("codehome")


@pytest.fixture
def cache(shared_home: Path) -> CodeCache:
    return CodeCache(shared_home)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "procs"
    commit(path, {"procs/__init__.py": "", "procs/sample.py": "VERSION = 1\n\ndef do_something(m):\n    return m\n"}, "one")
    return path


@pytest.mark.timeout(600)
def test_prepare_checks_out_the_commit_into_its_own_venv(cache: CodeCache, repo: Path):
    first = git.Repo(repo).head.commit.hexsha
    commit(repo, {"procs/sample.py": "VERSION = 2\n\ndef do_something(m):\n    return m\n"}, "two")

    prepared = cache.prepare(CodeSpec(str(repo), commit=first[:8]))

    assert prepared.commit == first
    assert "VERSION = 1" in (prepared.import_path / "procs" / "sample.py").read_text()
    out = json.loads(venv_python(prepared, "import elasticcode, celery, kombu, redis, json, sys; "
                                           "print(json.dumps([sys.prefix, celery.__version__, elasticcode.__file__]))"))
    assert Path(out[0]) == prepared.venv_dir and Path(out[0]) != Path(sys.prefix)
    assert out[1] == __import__("celery").__version__
    # the worker imports the agent's own elasticcode, not a copy
    assert Path(out[2]).resolve() == Path(__import__("elasticcode").__file__).resolve()
    assert cache.check_module(prepared, "procs.sample", ["do_something"]) == {}


@pytest.mark.timeout(600)
def test_branch_head_moves_and_old_commits_stay_usable(cache: CodeCache, repo: Path):
    old = git.Repo(repo).head.commit.hexsha
    assert cache.resolve(CodeSpec(str(repo), branch="main")) == old
    assert cache.resolve(CodeSpec(str(repo))) == old  # default branch

    new = commit(repo, {"procs/sample.py": "VERSION = 2\n"}, "two")
    assert cache.resolve(CodeSpec(str(repo), branch="main")) == new
    assert cache.resolve(CodeSpec(str(repo))) == new

    at_head = cache.prepare(CodeSpec(str(repo), branch="main"))
    at_old = cache.prepare(CodeSpec(str(repo), branch="main", commit=old))  # commit wins over branch
    assert (at_head.commit, at_old.commit) == (new, old)
    assert "VERSION = 2" in (at_head.code_dir / "procs/sample.py").read_text()
    assert "VERSION = 1" in (at_old.code_dir / "procs/sample.py").read_text()
    assert at_head.venv_dir == at_old.venv_dir  # same requirements, one venv


@pytest.mark.timeout(600)
def test_tag_requirements_and_modulepath(cache: CodeCache, tmp_path: Path):
    path = tmp_path / "tagged"
    commit(path, {"src/mod.py": "import six\n\ndef f():\n    return six.__version__\n"})
    git.Repo(path).create_tag("v1")
    tagged = git.Repo(path).head.commit.hexsha
    commit(path, {"src/mod.py": "BROKEN = (\n"}, "after the tag")

    prepared = cache.prepare(CodeSpec(str(path), tag="v1", modulepath="src", requirements="six==1.16.0"))

    assert prepared.commit == tagged and prepared.import_path == prepared.code_dir / "src"
    assert venv_python(prepared, "import six; print(six.__version__)") == "1.16.0"
    assert cache.check_module(prepared, "mod", ["f"]) == {}
    # the same requirement from the repository's requirements.txt lands in the same venv
    commit(path, {"src/requirements.txt": "# pinned\nsix==1.16.0\n", "src/mod.py": "def f():\n    pass\n"})
    from_file = cache.prepare(CodeSpec(str(path), branch="main", modulepath="src"))
    assert from_file.venv_dir == prepared.venv_dir


@pytest.mark.timeout(600)
def test_warm_prepare_needs_no_network_and_no_installer(cache: CodeCache, repo: Path):
    sha = git.Repo(repo).head.commit.hexsha
    spec = CodeSpec(str(repo), commit=sha)
    cold = cache.prepare(spec)

    shutil.rmtree(repo)  # nothing left to fetch from: a warm prepare must not try
    steps: list[str] = []
    started = time.perf_counter()
    warm = cache.prepare(spec, progress=steps.append)
    elapsed = time.perf_counter() - started

    assert warm == cold
    assert steps == []  # no clone, fetch, checkout or venv build
    assert elapsed < 1.0, elapsed


@pytest.mark.timeout(600)
def test_code_errors_name_the_problem(cache: CodeCache, repo: Path, tmp_path: Path):
    with pytest.raises(CodeError, match=r"cannot clone .*nowhere: repository not found"):
        cache.prepare(CodeSpec(str(tmp_path / "nowhere")))
    with pytest.raises(CodeError, match=r"commit 'deadbeef' is not in .*procs: push it or fix --commit"):
        cache.prepare(CodeSpec(str(repo), commit="deadbeef"))
    with pytest.raises(CodeError, match="not a hex sha"):
        cache.resolve(CodeSpec(str(repo), commit="HEAD~1"))
    with pytest.raises(CodeError, match="branch 'nope' is not in"):
        cache.resolve(CodeSpec(str(repo), branch="nope"))
    with pytest.raises(CodeError, match="tag 'v9' is not in"):
        cache.resolve(CodeSpec(str(repo), tag="v9"))
    with pytest.raises(CodeError, match="remote-helper"):
        cache.resolve(CodeSpec("ext::sh -c touch% /tmp/pwned"))
    with pytest.raises(CodeError, match="not in the allowed repositories"):
        CodeCache(tmp_path / "h", allowlist=("/srv/git/*",)).resolve(CodeSpec(str(repo)))
    with pytest.raises(CodeError, match="is a pip option"):
        cache.prepare(CodeSpec(str(repo), requirements="six --index-url=https://evil.example/simple"))
    with pytest.raises(CodeError, match="leaves the repository"):
        cache.prepare(CodeSpec(str(repo), modulepath="../.."))
    with pytest.raises(CodeError, match="not a folder"):
        cache.prepare(CodeSpec(str(repo), modulepath="missing"))

    prepared = cache.prepare(CodeSpec(str(repo)))
    with pytest.raises(CodeError, match=r"module 'procs.nothere' failed to import: ModuleNotFoundError: No module named"):
        cache.check_module(prepared, "procs.nothere", ["f"])
    assert cache.check_module(prepared, "procs.sample", ["do_something", "missing", "VERSION"]) == {
        "missing": "not found in module procs.sample",
        "VERSION": "is not callable in module procs.sample (it is int)",
    }


@pytest.mark.timeout(600)
def test_module_that_raises_on_import(cache: CodeCache, tmp_path: Path):
    path = tmp_path / "raising"
    commit(path, {"bad.py": "print('noise on stdout')\nraise RuntimeError('no config')\n"})
    prepared = cache.prepare(CodeSpec(str(path)))
    with pytest.raises(CodeError, match="module 'bad' failed to import: RuntimeError: no config"):
        cache.check_module(prepared, "bad", ["f"])
    commit(path, {"slow.py": "import time\ntime.sleep(120)\n"})
    prepared = cache.prepare(CodeSpec(str(path), branch="main"))
    started = time.monotonic()
    with pytest.raises(CodeError, match="importing module 'slow' did not finish within 2 s"):
        cache.check_module(prepared, "slow", ["f"], timeout=2)
    assert time.monotonic() - started < 10


@pytest.mark.timeout(600)
def test_unknown_requirement_fails_clearly(tmp_path: Path, repo: Path):
    cache = isolated(tmp_path / "home")
    started = time.monotonic()
    with pytest.raises(CodeError, match=r"requirements of the processor failed to install: .*this-package-does-not-exist-elasticcode"):
        cache.prepare(CodeSpec(str(repo), requirements="this-package-does-not-exist-elasticcode==9.9"))
    assert time.monotonic() - started < 300
    assert not any(p for p in cache.venv_root.iterdir() if p.name.startswith("py"))  # no half venv


@pytest.mark.timeout(120)
def test_repository_that_asks_for_credentials_fails_instead_of_hanging(tmp_path: Path):
    class AuthRequired(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AuthRequired)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/org/private.git"
        with pytest.raises(CodeError, match=r"cannot clone .*private.git: access denied"):
            CodeCache(tmp_path / "home").resolve(CodeSpec(url))
    finally:
        server.shutdown()


@pytest.mark.timeout(900)
def test_two_threads_preparing_one_spec_build_once(tmp_path: Path, repo: Path):
    cache = isolated(tmp_path / "home")
    spec = CodeSpec(str(repo), requirements="six==1.16.0")
    steps: list[str] = []
    results: list[PreparedCode | BaseException] = []

    def work():
        try:
            results.append(cache.prepare(spec, progress=steps.append))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert len(results) == 2 and results[0] == results[1], results
    assert sum(s.startswith("cloning") for s in steps) == 1, steps
    assert sum(s.startswith("checking out") for s in steps) == 1, steps
    assert sum(s.startswith("building virtual environment") for s in steps) == 1, steps


@pytest.mark.timeout(900)
def test_pip_builds_the_same_kind_of_venv(tmp_path: Path, repo: Path):
    steps: list[str] = []
    prepared = isolated(tmp_path / "home", installer="pip").prepare(CodeSpec(str(repo)), progress=steps.append)
    assert any("with pip" in s for s in steps), steps
    assert venv_python(prepared, "import elasticcode, celery, redis, sys; print(sys.prefix)") == str(prepared.venv_dir)


@pytest.mark.timeout(600)
@pytest.mark.skipif(not agent_sandbox().separate, reason="as root only: workers then run as a user of their own")
def test_as_root_code_is_readable_by_the_worker_user_and_imported_as_it(cache: CodeCache, tmp_path: Path):
    import os
    import stat

    path = tmp_path / "whoami"
    commit(path, {"who.py": "import os\nraise RuntimeError(f'uid {os.getuid()} home {os.environ.get(\"HOME\")} '\n"
                            "                   f'{sorted(k for k in os.environ if k.startswith((\"ELASTICCODE\", \"PG\")))}')\n"})
    prepared = cache.prepare(CodeSpec(str(path)))
    sandbox = agent_sandbox()
    assert prepared.code_dir.is_relative_to(CODE_ROOT) and prepared.venv_dir.is_relative_to(CODE_ROOT)
    root = CODE_ROOT.stat()
    assert (root.st_uid, root.st_gid, stat.S_IMODE(root.st_mode)) == (0, sandbox.gid, 0o750)
    for p in (prepared.code_dir / "who.py", prepared.venv_dir / "pyvenv.cfg"):
        assert p.stat().st_uid == 0 and p.stat().st_mode & 0o044 == 0o044 and not p.stat().st_mode & 0o022
    os.environ["ELASTICCODE_PROBE"] = "secret"  # what the agent has must not reach the import check
    try:
        with pytest.raises(CodeError, match=rf"RuntimeError: uid {sandbox.uid} home .* \[\]"):
            cache.check_module(prepared, "who", ["f"])
    finally:
        del os.environ["ELASTICCODE_PROBE"]
