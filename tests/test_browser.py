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
    from elasticcode.api import server as api_server
    from elasticcode.cli import local_agent

    base = Path(tempfile.mkdtemp(prefix="ecw-"))
    yield base / "home"
    local_agent.stop(base / "home")
    api_server.stop(base / "home")  # `flow up` started it; purge alone would leave it to notice by itself
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
        yield {"base": base, "token": token, "log": tmp_path / "jupyterlab.log", "root": root}
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


TEN = "ten_processors.ipynb"
TEN_NETWORK = '''import json, pathlib

names = [f"ten{i:02d}" for i in range(10)]
network = {
    "queues": [{"name": "ten.queue"}],
    "processors": [{"name": n, "gitrepo": "/srv/git/ten", "module": "ten.functions", "requested_status": "stopped"}
                   for n in names],
    "sockets": [{"name": f"{n}.{f}", "processor": n, "queue": "ten.queue", "function": f}
                for n in names for f in ("do_something", "do_this")],
    "plugs": [{"name": f"{a}.next", "source": f"{a}.do_something", "target": f"{b}.do_this",
               **({"argument": "message"} if i % 3 == 0 else {})} for i, (a, b) in enumerate(zip(names, names[1:]))],
}
pathlib.Path("ten.json").write_text(json.dumps(network))'''


def ten_processors_notebook(path: Path) -> None:
    """Ten processors, two sockets each, plugged in a chain (some bound to an argument), from one
    network file; then the graph. The processors are not started: the drawing is what is tested."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = ["%load_ext elasticcode\n%flow up", TEN_NETWORK, "%flow compose build ten.json", "%flow graph"]
    kernel = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in cells], metadata=kernel), path)


VISIBLE = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def run_all(page, lab: dict, name: str, seconds: float, marker: str) -> None:
    """Open notebook `name` (the one with a cell holding `marker`), wait for its kernel, Run All Cells
    as a user would, wait until done without errors."""
    page.goto(f"{lab['base']}/lab/tree/{name}?token={lab['token']}", timeout=120_000)
    # The workspace may bring back other notebooks: wait until this one is the visible tab, and focus it.
    panel = page.locator(VISIBLE).filter(has=page.locator(".jp-InputArea-editor", has_text=marker))
    panel.wait_for(state="visible", timeout=120_000)
    panel.locator(".jp-CodeCell .jp-InputPrompt").first.click()
    # The toolbar's indicator says "idle" before any kernel exists, and Run All then does
    # nothing: wait for the status bar's "Python 3 (ipykernel) | Idle".
    wait_for(page, "() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                   ".some(e => /\\(ipykernel\\) \\| Idle$/.test(e.textContent))", 120, "the kernel to start")
    page.locator("#jp-MainMenu .lm-MenuBar-item", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    first = page.locator(f"{VISIBLE} .jp-Notebook .jp-CodeCell .jp-InputPrompt").first
    wait_for(page, "el => /\\[(\\*|\\d+)\\]/.test(el.textContent)", 60, "Run All Cells to start",
             arg=first.element_handle())
    # Done when every code cell has a number (none "[*]" or blank) and the kernel is idle.
    done = """sel => {
        const panel = document.querySelector(sel);
        const prompts = [...panel.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
        const numbered = prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        const idle = panel.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status') === 'idle';
        return numbered && idle;
    }"""
    wait_for(page, done, seconds, f"all cells of {name} to run (kernel idle, every cell numbered)", arg=VISIBLE)
    errors = page.locator(f"{VISIBLE} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.all_inner_texts()


def graph_of(page, what: str):
    """The graph widget of the visible notebook's `%flow graph` cell, once cytoscape has drawn it."""
    cell = page.locator(f"{VISIBLE} .jp-CodeCell").filter(has=page.locator(".jp-InputArea-editor", has_text="%flow graph"))
    assert cell.count() == 1
    cell.scroll_into_view_if_needed()
    graph = cell.locator(".jp-OutputArea .custom-widget").first
    graph.wait_for(state="visible", timeout=60_000)
    # cytoscape's node layer ("layer2-node") holds nodes and edges: it must have drawn pixels.
    drawn = """el => {
        const c = el.querySelector('canvas[data-id="layer2-node"]');
        if (!c || !c.width || !c.height) return 0;
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]) n++;
        return n;
    }"""
    wait_for(page, f"el => ({drawn})(el) > 500", 60, f"cytoscape to draw {what}", arg=graph.element_handle())
    return graph


# Every label cytoscape draws, as rendered on the page (screen pixels): its font size and its box.
LABELS = """el => {
    const cy = [el, ...el.querySelectorAll('div')].find(d => d._cyreg)._cyreg.cy;
    const zoom = cy.zoom();
    const labels = cy.elements().filter(e => e.data('label')).map(e => {
        const b = e.renderedBoundingBox({includeNodes: false, includeEdges: false, includeLabels: true,
                                         includeOverlays: false});
        return {text: e.data('label'), px: parseFloat(e.style('font-size')) * zoom,
                lines: e.data('label').split('\\n').length, box: [b.x1, b.y1, b.x2, b.y2]};
    });
    return {labels, zoom, size: [cy.width(), cy.height()], processors: cy.nodes('.processor').length};
}"""


def wait_for(page, script: str, seconds: float, what: str, arg=None) -> None:
    try:
        page.wait_for_function(script, arg=arg, timeout=seconds * 1000, polling=500)
    except sync_api.TimeoutError:
        raise AssertionError(f"timed out after {seconds:g} s waiting for {what}") from None


def launch(pw, tmp_path: Path):
    """Debian's Chromium, headless, in a fresh profile (a persistent context is how Playwright takes
    a --user-data-dir)."""
    return pw.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000})


@pytest.mark.timeout(600)
def test_quickstart_draws_the_graph_in_a_browser(lab, tmp_path):
    console: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = launch(pw, tmp_path)
        page = None
        try:
            page = browser.new_page()
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
            run_all(page, lab, NOTEBOOK.name, 480, "%flow add plug")
            graph = graph_of(page, "the quickstart's graph")
            # cytoscape registers its instance on the container (`_cyreg`): ask it what it shows.
            shown = graph.evaluate("""el => {
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
            graph.screenshot(path=str(tmp_path / "quickstart-graph.png"))
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


@pytest.mark.timeout(300)
def test_ten_processors_keep_labels_readable_and_inside_the_box(lab, tmp_path):
    """A notebook that adds ten processors (two sockets each, plugged in a chain) and opens `%flow graph`:
    measured on the rendered page, every label is at least 10 px high and inside the graph's box."""
    ten_processors_notebook(lab["root"] / TEN)
    with sync_api.sync_playwright() as pw:
        browser = launch(pw, tmp_path)
        page = None
        try:
            page = browser.new_page()
            run_all(page, lab, TEN, 240, "%flow compose build")
            graph = graph_of(page, "ten processors")
            # The widget fits the drawing again once it has its final size (a first fit can come too
            # early and be clamped at the smallest zoom): wait, bounded, for a fit that uses the box.
            fits = f"""el => {{
                const m = ({LABELS})(el);
                return m.zoom > 0.85 && m.labels.length > 0 && m.labels.every(l => l.px >= 10 && l.box[0] >= -1
                    && l.box[1] >= -1 && l.box[2] <= m.size[0] + 1 && l.box[3] <= m.size[1] + 1);
            }}"""
            try:
                wait_for(page, fits, 10, "the labels to fit", arg=graph.element_handle())
            except AssertionError:
                pass  # measured and reported below
            measured = graph.evaluate(LABELS)
            keep = ROOT / "test-output" / "browser"  # gitignored: for a person to look at
            keep.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(keep / "ten-processors.png"))
            graph.screenshot(path=str(keep / "ten-processors-graph.png"))
            width, height = measured["size"]
            assert measured["processors"] == 10, measured  # this notebook's: the default view
            assert len(measured["labels"]) == 10 + 20 + 3, measured  # processors, sockets, argument-bound plugs
            small = [m for m in measured["labels"] if m["px"] < 10 or (m["box"][3] - m["box"][1]) / m["lines"] < 10]
            assert not small, f"labels under 10 px high at zoom {measured['zoom']:.2f}: {small}"
            outside = [m for m in measured["labels"] if m["box"][0] < -1 or m["box"][1] < -1
                       or m["box"][2] > width + 1 or m["box"][3] > height + 1]
            assert not outside, f"labels outside the {width}x{height} box: {outside}"
            drawn = [min(m["box"][0] for m in measured["labels"]), min(m["box"][1] for m in measured["labels"]),
                     max(m["box"][2] for m in measured["labels"]), max(m["box"][3] for m in measured["labels"])]
            assert (drawn[2] - drawn[0]) > 0.6 * width or (drawn[3] - drawn[1]) > 0.6 * height, (drawn, measured["zoom"])
            print(f"\nten processors: zoom {measured['zoom']:.2f}, smallest label "
                  f"{min(m['px'] for m in measured['labels']):.1f} px, box {width}x{height}")
        except BaseException:
            if page:
                page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            browser.close()
