"""Lineage in open standards, from real recorded calls (agent, worker, a plug chain): OpenLineage run
events validated against the spec's JSON schema with format checks, posted with openlineage-python's
HTTP transport to a local server, and W3C PROV-JSON read back with `prov`."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
from runtime_helpers import make_repo, wait_until

import elasticcode
from elasticcode.errors import ElasticCodeError

pytestmark = pytest.mark.timeout(240)

SHARED_SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "specs" / "OpenLineage-RunEvent.schema.json"
# The team's copy beside the checkout when there is one, else the copy in tests/specs.
SCHEMA = SHARED_SCHEMA if SHARED_SCHEMA.exists() else Path(__file__).with_name("specs") / SHARED_SCHEMA.name

CODE = '''
def src(x):
    return "src:" + str(x)


def dst(text):
    return "dst:" + text


def boom(x):
    raise ValueError("boom " + str(x))
'''


def validator() -> jsonschema.Validator:
    if not SCHEMA.exists():
        pytest.skip(f"no OpenLineage schema at {SCHEMA} (shared/specs beside the repository)")
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    checker = cls.FORMAT_CHECKER
    missing = {"uuid", "uri", "date-time"} - set(checker.checkers)
    assert not missing, f"format checks unavailable (install jsonschema[format-nongpl]): {missing}"
    return cls(schema, format_checker=checker)


class Receiver(BaseHTTPRequestHandler):
    """A tiny OpenLineage endpoint: counts the run events it is sent."""

    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/api/v1/lineage":
            type(self).received.append(json.loads(body))
            self.send_response(201)
        else:
            self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Receiver.received
    server.shutdown()
    server.server_close()


def test_openlineage_and_prov_exports_of_a_plug_chain(flow, agent, tmp_path, receiver):
    check = validator()
    repo = make_repo(tmp_path / "repo", CODE, "linmod/funcs.py")
    for args in (("add", "queue", "-n", "lq"),
                 ("add", "processor", "-n", "lproc", "-g", repo.working_tree_dir, "-m", "linmod.funcs", "-h", "localhost"),
                 *(("add", "socket", "-n", name, "-q", "lq", "-pn", "lproc", "-t", name) for name in ("src", "dst", "boom")),
                 ("add", "plug", "-n", "chain", "-s", "src", "-t", "dst")):
        result = flow(*args)
        assert result.code == 0, result
    src = elasticcode.Socket(name="src")
    first = src.delay(0)
    assert first.get(timeout=150) == "src:0", agent.output()[-3000:]
    handles = [first] + [src.delay(i) for i in (1, 2)]
    assert [h.get(timeout=60) for h in handles] == ["src:0", "src:1", "src:2"]
    with pytest.raises(ElasticCodeError, match="ValueError: boom 1"):
        elasticcode.Socket(name="boom").delay(1).get(timeout=60)

    def settled():
        frame = elasticcode.history()
        done = frame[frame["state"].isin(["finished", "failed"])]
        return [frame] if len(frame) == 7 and len(done) == 7 else None

    frame = wait_until(settled, 30, what="7 recorded calls")[0]
    ids = dict(zip(frame["id"], frame["name"], strict=True))
    src_ids = {i for i, n in ids.items() if n == "src"}

    # OpenLineage: START for every call, COMPLETE for the 6 finished, FAIL for boom
    out = tmp_path / "lineage.jsonl"
    exported = flow("export", "openlineage", "--since", "1h", "-o", str(out))
    assert exported.code == 0 and "wrote 14 OpenLineage event(s)" in exported.out, exported
    events = [json.loads(line) for line in out.read_text().splitlines()]
    for event in events:
        check.validate(event)
    assert Counter(e["eventType"] for e in events) == {"START": 7, "COMPLETE": 6, "FAIL": 1}
    assert Counter(e["job"]["name"] for e in events) == {"src": 6, "dst": 6, "boom": 2}
    assert {e["run"]["runId"] for e in events} == set(ids)
    children = [e for e in events if e["job"]["name"] == "dst"]
    assert all(e["run"]["facets"]["parent"]["run"]["runId"] in src_ids for e in children)
    assert all((e["run"]["facets"]["parent"]["job"]["namespace"], e["run"]["facets"]["parent"]["job"]["name"])
               == ("elasticcode", "src") for e in children)
    assert all("parent" not in e["run"]["facets"] for e in events if e["job"]["name"] != "dst")
    assert all([(d["namespace"], d["name"]) for d in e["inputs"]] == [("elasticcode", "results/src")] for e in children)
    assert Counter(d["name"] for e in events for d in e.get("outputs", [])) == {"results/src": 3, "results/dst": 3}
    failed = next(e for e in events if e["eventType"] == "FAIL")
    assert failed["run"]["facets"]["errorMessage"]["message"] == "ValueError: boom 1"
    times = [datetime.fromisoformat(e["eventTime"]) for e in events]
    assert times == sorted(times)
    # a broken event does not pass: the checks are on
    broken = dict(events[0], eventTime="yesterday", run={"runId": "call-1"}, producer="elasticcode")
    assert len(list(check.iter_errors(broken))) == 3

    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    none = flow("export", "openlineage", "--since", tomorrow)
    assert none.code == 0 and none.out == "", none
    bad = flow("export", "openlineage", "--since", "last tuesday")
    assert bad.code == 1 and "--since" in bad.err

    # the same events, posted with openlineage-python's HTTP transport
    url, received = receiver
    posted = flow("export", "openlineage", "--url", url)
    assert posted.code == 0 and f"posted 14 OpenLineage event(s) to {url}" in posted.err, posted
    assert len(received) == 14 and Counter(e["eventType"] for e in received) == {"START": 7, "COMPLETE": 6, "FAIL": 1}
    for event in received:
        check.validate(event)
    down = flow("export", "openlineage", "--url", "http://127.0.0.1:9/")
    assert down.code == 1 and "posting OpenLineage events" in down.err

    # W3C PROV-JSON, read back with prov
    from prov.model import ProvActivity, ProvAgent, ProvAssociation, ProvCommunication, ProvDocument, ProvEntity, ProvGeneration, ProvUsage

    prov_file = tmp_path / "calls.prov.json"
    written = flow("export", "prov", "-o", str(prov_file))
    assert written.code == 0 and "wrote 7 call(s)" in written.out, written
    doc = ProvDocument.deserialize(source=str(prov_file), format="json")
    records = list(doc.get_records())
    counts = {kind.__name__: sum(isinstance(r, kind) for r in records)
              for kind in (ProvActivity, ProvEntity, ProvAgent, ProvGeneration, ProvCommunication, ProvUsage, ProvAssociation)}
    assert counts == {"ProvActivity": 7, "ProvEntity": 6, "ProvAgent": 2, "ProvGeneration": 6, "ProvCommunication": 3,
                      "ProvUsage": 3, "ProvAssociation": 14}, counts
    informed = {(str(r.formal_attributes[0][1]), str(r.formal_attributes[1][1])) for r in records
                if isinstance(r, ProvCommunication)}
    assert {parent.split(":", 1)[1] for _, parent in informed} == src_ids
    assert ProvDocument.deserialize(content=doc.serialize(format="json"), format="json") == doc
