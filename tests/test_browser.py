"""The quickstart notebook in a real JupyterLab, driven by a real (headless) Chromium.

nbclient (test_notebooks.py) proves the kernel side; only a browser proves that the widget
models reach the page and that ipycytoscape draws the graph. Chromium comes from Debian
(Playwright's own browser download is not used), driven by the `playwright` package.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
WIDGET_ERRORS = ("Could not create a model", "Model not found", "Failed to load model class")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does it as root)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the `playwright` package is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stack_home():
    """A private ELASTICCODE_HOME, short enough for the Redis socket path; the stack purged after."""
    from elasticcode import embedded
    from elasticcode.cli import local_agent

    base = Path(tempfile.mkdtemp(prefix="ecw-"))
    yield base / "home"
    local_agent.stop(base / "home")
    embedded.purge(base / "home")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def lab(tmp_path, stack_home):
    """JupyterLab on 127.0.0.1 with token auth, serving a copy of the quickstart; yields its URL."""
    import psutil

    root, jupyter = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    # No news or update prompts: their toasts would cover the page (and they would go online).
    settings = jupyter / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELASTICCODE_", "JUPYTER"))}
    env.update(ELASTICCODE_HOME=str(stack_home), JUPYTER_CONFIG_DIR=str(jupyter / "config"),
               JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"))
    log = open(tmp_path / "jupyterlab.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly",  # the default asks PyPI about extensions
         f"--LabApp.user_settings_dir={jupyter / 'settings'}", f"--LabApp.workspaces_dir={jupyter / 'workspaces'}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI runs as root
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}"
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not answer within 120 s"
                time.sleep(0.3)
        yield {"base": base, "token": token, "log": tmp_path / "jupyterlab.log"}
    finally:
        # Kernels run in sessions of their own: remember them before asking the server to stop.
        family = psutil.Process(server.pid).children(recursive=True) if server.poll() is None else []
        try:
            req = urllib.request.Request(f"{base}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(req, timeout=10).close()  # shuts the kernels down, then the server
            server.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
        log.close()
        for proc in family:  # a kernel that ignored the shutdown (the stack is stopped by stack_home)
            if proc.is_running() and proc.name().startswith("python") and "ipykernel" in " ".join(proc.cmdline()):
                proc.kill()


def wait_for(page, script: str, seconds: float, what: str, arg=None) -> None:
    try:
        page.wait_for_function(script, arg=arg, timeout=seconds * 1000, polling=500)
    except sync_api.TimeoutError:
        raise AssertionError(f"timed out after {seconds:g} s waiting for {what}") from None


@pytest.mark.timeout(600)
def test_quickstart_draws_the_graph_in_a_browser(lab, tmp_path):
    console: list[str] = []
    with sync_api.sync_playwright() as pw:
        # A persistent context is how Playwright takes a (fresh) --user-data-dir.
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        page = None
        try:
            page = browser.new_page()
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
            page.goto(f"{lab['base']}/lab/tree/{NOTEBOOK.name}?token={lab['token']}", timeout=120_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell", timeout=120_000)
            # The toolbar's indicator says "idle" before any kernel exists, and Run All then does
            # nothing: wait for the status bar's "Python 3 (ipykernel) | Idle".
            wait_for(page, "() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                           ".some(e => /\\(ipykernel\\) \\| Idle$/.test(e.textContent))", 120, "the kernel to start")

            # Run > Run All Cells, as a user would.
            page.locator("#jp-MainMenu .lm-MenuBar-item", has_text="Run").first.click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            first = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").first
            wait_for(page, "el => /\\[(\\*|\\d+)\\]/.test(el.textContent)", 60, "Run All Cells to start",
                     arg=first.element_handle())

            # Done when every code cell has a number (none "[*]" or blank) and the kernel is idle.
            done = """() => {
                const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
                const numbered = prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
                const idle = document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status') === 'idle';
                return numbered && idle;
            }"""
            wait_for(page, done, 480, "all cells to run (kernel idle, every cell numbered)")
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
            assert errors.count() == 0, errors.all_inner_texts()

            cell = page.locator(".jp-CodeCell").filter(
                has=page.locator(".jp-InputArea-editor", has_text="%flow graph"))
            assert cell.count() == 1
            cell.scroll_into_view_if_needed()
            graph = cell.locator(".jp-OutputArea .custom-widget")
            graph.first.wait_for(state="visible", timeout=60_000)
            # cytoscape's node layer ("layer2-node") holds nodes and edges: it must have drawn pixels.
            drawn = """el => {
                const c = el.querySelector('canvas[data-id="layer2-node"]');
                if (!c || !c.width || !c.height) return 0;
                const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 3; i < data.length; i += 4) if (data[i]) n++;
                return n;
            }"""
            wait_for(page, f"el => ({drawn})(el) > 500", 60, "cytoscape to draw the graph",
                     arg=graph.first.element_handle())
            # cytoscape registers its instance on the container (`_cyreg`): ask it what it shows.
            shown = graph.first.evaluate("""el => {
                const cy = [el, ...el.querySelectorAll('div')].find(d => d._cyreg)._cyreg.cy;
                const box = cy.elements().renderedBoundingBox();
                return {nodes: cy.nodes().map(n => n.data('label').split('\\n')[0]), edges: cy.edges().length,
                        box: [box.x1, box.y1, box.x2, box.y2], size: [cy.width(), cy.height()]};
            }""")
            assert {"sample", "sample.do_something", "sample.do_this"} <= set(shown["nodes"]), shown
            assert shown["edges"] >= 1, shown
            x1, y1, x2, y2 = shown["box"]
            width, height = shown["size"]
            inside = x1 >= -1 and y1 >= -1 and x2 <= width + 1 and y2 <= height + 1
            out = tmp_path / "quickstart.png"
            page.screenshot(path=str(out))
            graph.first.screenshot(path=str(tmp_path / "quickstart-graph.png"))
            keep = ROOT / "test-output" / "browser"  # gitignored: for a person to look at
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(out, keep / "quickstart.png")
            shutil.copy(tmp_path / "quickstart-graph.png", keep / "quickstart-graph.png")
            # Checked after the screenshots, so that a clipped graph can be seen.
            assert inside, f"the graph is drawn outside its {width}x{height} view (clipped): {shown}"
        except BaseException:
            if page:
                page.screenshot(path=str(tmp_path / "failure.png"))  # what the page showed when it failed
            raise
        finally:
            (tmp_path / "console.log").write_text("\n".join(console))
            browser.close()
    bad = [line for line in console if any(e in line for e in WIDGET_ERRORS)]
    assert not bad, bad
