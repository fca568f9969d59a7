"""Every notebook in notebooks/ runs top to bottom in a real kernel, on a real embedded stack, twice
in a row (a second Run All changes nothing and fails nowhere), and none waits by hand."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def notebook_home(tmp_path_factory):
    """A fresh ELASTICCODE_HOME per notebook: each starts with `%flow up` like a new user would."""
    from elasticcode import embedded
    from elasticcode.api import server as api_server
    from elasticcode.cli import local_agent

    home = tmp_path_factory.mktemp("nb") / "home"
    yield home
    local_agent.stop(home)
    api_server.stop(home)  # `flow up` started it; purge alone would leave it to notice by itself
    embedded.purge(home)


def execute(path: Path, home: Path, out_dir: Path) -> nbformat.NotebookNode:
    book = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTICCODE_")}
    env["ELASTICCODE_HOME"] = str(home)
    client = NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(out_dir)}},
                            store_widget_state=True)
    client.km = client.create_kernel_manager()
    client.km.extra_env = env  # the kernel sees only the notebook's own configuration
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    nbformat.write(book, out_dir / path.name)  # kept for inspection
    return book


def plugged_children(home: Path) -> int:
    from sqlalchemy import text

    from elasticcode import embedded
    from elasticcode.db.engine import get_engine

    with get_engine(embedded.urls(home).admin_db).connect() as conn:
        return conn.execute(text("SELECT count(*) FROM call WHERE parent IS NOT NULL AND name = 'sample.do_this'")).scalar()


def outputs(book) -> list[dict]:
    return [o for cell in book.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


# Waiting by hand: a sleep, or a loop that breaks out once something shows up.
HAND_WAITING = re.compile(r"sleep\(|\bwhile\b|\bbreak\b")


def code_sources(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_does_not_wait_by_hand(path):
    sources = code_sources(path)
    assert sources, path
    assert not [s for s in sources if HAND_WAITING.search(s)]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean(path, notebook_home, tmp_path):
    (tmp_path / "first").mkdir()
    first = execute(path, notebook_home, tmp_path / "first")
    assert not [o for o in outputs(first) if o.get("output_type") == "error"]
    book = execute(path, notebook_home, tmp_path)  # Run All again, on the same stack
    produced = outputs(book)
    assert not [o for o in produced if o.get("output_type") == "error"]
    text = json.dumps(produced)
    if path.stem == "quickstart":
        assert WIDGET_VIEW in text  # the live graph and the call tree are widgets
        assert "Do this: some data" in text and "TEXT:HI THERE!" in text
        assert "widgets" in book.metadata and book.metadata["widgets"]
        assert plugged_children(notebook_home) == 2  # the plug fired once per run, recorded before `proc stop`
        assert "plug sample.plug unchanged" in text  # the second run's `%flow add plug`
        assert "Do this: TEXT:HI THERE!" in text  # the plugged call's result, from call.flow(wait=True)
    if path.stem == "workflow":
        assert "wf.add_two" in text and "54" in text and "[4, 50]" in text
        assert "plug wf.p_one unchanged" in text
    if path.stem == "provenance":
        assert "image/png" in text and "prov.slower" in text
        assert str(2 * sum(range(30))) in text  # gather() over 30 handles
        assert "30/30 finished" in json.dumps(book.metadata.get("widgets", {}))  # progress(): one bar for the batch


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "workflow", "provenance", "results"}
