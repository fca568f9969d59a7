"""binder/: the scripts repo2docker runs, run here as far as a machine without Docker allows.

postBuild really installs the repository into a fresh virtual environment (from a copy of the
repository: an editable install writes into the source tree); start really brings the stack up
and hands over to its command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
CURRENT_BIN = str(Path(sys.executable).parent)  # the venv whose `flow` start should find


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTICCODE_") and k != "VIRTUAL_ENV"}
    env.update(extra)
    return env


def test_scripts_are_executable_bash():
    for name in ("postBuild", "start"):
        script = BINDER / name
        assert os.access(script, os.X_OK), f"binder/{name} must be executable (repo2docker runs it directly)"
        subprocess.run(["bash", "-n", str(script)], check=True)
    assert "exec \"$@\"" in (BINDER / "start").read_text()


def copy_of_repo(dest: Path) -> Path:
    """The files git would check out (tracked, plus new ones not ignored): what Binder sees."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():  # a tracked file deleted in the working tree is not there
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.mark.timeout(600)
def test_postbuild_installs_the_repository_into_a_fresh_environment(tmp_path):
    repo, home, venv = copy_of_repo(tmp_path / "repo"), tmp_path / "home", tmp_path / "venv"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # no system site-packages
    env = clean_env(HOME=str(home), VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([str(repo / "binder" / "postBuild")], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    python = str(venv / "bin" / "python")  # probes run from `home`: -c puts the cwd first on sys.path
    probe = subprocess.run([python, "-c", "import elasticcode, jupyter_ext, kernel_agent, ipycytoscape, jupyterlab; "
                            "print(elasticcode.__file__)"], cwd=home, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == str(repo / "elasticcode" / "__init__.py")  # editable, from the repository
    assert (venv / "bin" / "flow").exists()
    # The widgets' lab extensions are prebuilt and enabled without any build step.
    lab = subprocess.run([str(venv / "bin" / "jupyter"), "labextension", "list"], env=env, capture_output=True, text=True)
    listing = lab.stdout + lab.stderr
    for ext in ("jupyter-cytoscape", "@jupyter-widgets/jupyterlab-manager"):
        assert any(ext in line and "enabled" in line and "OK" in line for line in listing.splitlines()), listing

    # The pre-built processor venv is the one the agent will look for (same key at run time).
    key = subprocess.run([python, "-c", "from kernel_agent.venvs import venv_key; print(venv_key([])[0])"],
                         cwd=home, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert (home / ".elasticcode" / "venvs" / key / ".elasticcode-ready").exists(), done.stdout[-2000:]
    assert (home / ".elasticcode").stat().st_mode & 0o077 == 0  # the stack's home stays private


@pytest.fixture
def short_home():
    """A HOME short enough for the Redis socket path (tmp_path can be too long); stack purged after."""
    from elasticcode import embedded
    from elasticcode.api import server as api_server
    from elasticcode.cli import local_agent

    base = Path(tempfile.mkdtemp(prefix="ecb-"))
    yield base
    home = base / ".elasticcode"
    local_agent.stop(home)
    api_server.stop(home)  # `flow up` started it; purge alone would leave it to notice by itself
    embedded.purge(home)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(300)
def test_start_brings_the_stack_up_then_runs_the_command(short_home):
    from elasticcode import embedded
    from elasticcode.cli import local_agent

    env = clean_env(HOME=str(short_home), PATH=f"{CURRENT_BIN}{os.pathsep}{os.environ['PATH']}")
    code = "import os, sys; print('started', os.environ['ELASTICCODE_HOME']); sys.exit(3)"
    done = subprocess.run([str(BINDER / "start"), sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=280)
    home = short_home / ".elasticcode"  # the default when ELASTICCODE_HOME is unset
    assert done.returncode == 3, done.stdout + done.stderr  # the command's status passes through
    assert f"started {home}" in done.stdout
    assert "ElasticCode: local stack is up" in done.stdout, done.stdout
    assert {s.name: s.running for s in embedded.status(home)} == {"postgres": True, "redis": True}
    assert local_agent.running_pid(home)
    assert "stack is up" in (home / "start.log").read_text()


@pytest.mark.timeout(120)
def test_start_runs_the_command_even_when_the_stack_cannot_start(short_home):
    # A home inside a file cannot be made: `flow up` refuses at once with one line.
    (short_home / "a-file").write_text("")
    unusable = short_home / "a-file" / "home"
    env = clean_env(HOME=str(short_home), ELASTICCODE_HOME=str(unusable),
                    PATH=f"{CURRENT_BIN}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([str(BINDER / "start"), sys.executable, "-c", "print('ran'); raise SystemExit(7)"],
                          env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 7, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "ran"
    notice = [ln for ln in lines if ln.startswith("ElasticCode:")]
    assert len(notice) == 1 and "did not start" in notice[0] and "ELASTICCODE_HOME" in notice[0], done.stdout
