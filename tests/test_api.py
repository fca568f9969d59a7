"""`flow api`: the network over HTTP and WebSockets, from the outside.

The server runs as `flow api start` starts it (a process of its own) and logs in as a plain member
of `elasticcode_api`; every request acts as the user whose token it carries, as that user's
database role. Real PostgreSQL, Redis, agent and workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import psycopg2
import pytest
from psycopg2 import sql
from runtime_helpers import FUNCTIONS, AgentProcess, make_repo, wait_until

from elasticcode.db.engine import get_engine

pytestmark = pytest.mark.timeout(240)
PASSWORD = "s3cret-pass"
MODULE = "pyfi.processors.sample"
PROBLEM = "application/problem+json"
ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture(scope="module")
def api_login(admin_url, pg_server, tmp_path_factory):
    """The API server's login: a plain role in elasticcode_api (as `flow up` makes one), its password in a 0600 file."""
    from conftest import group_login

    yield from group_login(admin_url, pg_server, tmp_path_factory.mktemp("api"), "elasticcode_api", "ec_api")


@pytest.fixture(scope="module")
def api(api_login, admin_url, redis_base, tmp_path_factory):
    """`flow api start` on a free port; its base URL. Stopped with `flow api stop`."""
    from conftest import run_flow

    home = tmp_path_factory.mktemp("apihome")
    env = {"ELASTICCODE_HOME": str(home), "ELASTICCODE_DB": admin_url, "ELASTICCODE_API_DB": api_login,
           "ELASTICCODE_BROKER": redis_base, "ELASTICCODE_BACKEND": redis_base}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("ELASTICCODE_INI", raising=False)
        started = run_flow("--json", "api", "start", "--port", "0")
        assert started.code == 0, (started, (home / "api.log").read_text() if (home / "api.log").exists() else "")
        url = json.loads(started.out)["url"]
        status = run_flow("--json", "api", "status")
        assert json.loads(status.out)[0]["running"] is True
    try:
        yield url
    finally:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ELASTICCODE_HOME", str(home))
            assert run_flow("api", "stop").code == 0
        log = (home / "api.log").read_text()
        assert "Traceback" not in log, log[-3000:]


def add_user(flow, db_url: str, role: str, rights: tuple[str, ...] = ("ALL",)) -> None:
    assert flow("add", "user", "-n", role, input=f"{PASSWORD}\n{PASSWORD}\n").code == 0
    for right in rights:
        assert flow("add", "privilege", "-u", role, "-n", right).code == 0


def issue_token(db_url: str, role: str) -> str:
    """A token as `role` would get it from `flow user token` (the function checks the caller's own role)."""
    with get_engine(db_url).begin() as conn:
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            cur.execute("SELECT elasticcode_issue_token()")
            return cur.fetchone()[0]


def client(url: str, token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=60)


@pytest.fixture
def users(flow, db_url, make_role, services):
    """Two ElasticCode users with every right, and their tokens: {"a": (role, token), "b": (...)}."""
    out = {}
    for key in ("a", "b"):
        role = make_role()
        add_user(flow, db_url, role)
        out[key] = (role, issue_token(db_url, role))
    return out


def test_tokens_identity_and_isolation(api, users, flow, db_url, make_role, monkeypatch, api_login):
    (a, token_a), (b, token_b) = users["a"], users["b"]
    # No token, or a bad one: 401 as problem details, and nothing else said.
    for headers in ({}, {"Authorization": "Bearer ec_nope"}, {"Authorization": "Basic eDp5"}):
        reply = httpx.get(f"{api}/processors", headers=headers)
        assert reply.status_code == 401 and reply.headers["content-type"].startswith(PROBLEM), reply.text
        assert reply.json()["status"] == 401 and "flow user token" in reply.json()["detail"]
    assert httpx.get(f"{api}/health").json() == {"status": "ok"}

    with client(api, token_a) as ca, client(api, token_b) as cb:
        assert ca.get("/whoami").json()["user"] == a
        assert cb.get("/whoami").json()["user"] == b
        # Same checks and one-line errors as the CLI.
        missing = ca.post("/sockets", json={"name": "s1", "processor": "nope", "queue": "q", "function": "f"})
        assert missing.status_code == 404 and missing.json()["detail"] == \
            "processor 'nope' does not exist: list them with `flow ls processors`"
        for i in range(5):
            assert ca.post("/queues", json={"name": f"q{i}"}).status_code == 201
        taken = ca.post("/queues", json={"name": "q0"})
        assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
        bad = ca.post("/processors", json={"name": "p1", "module": "not a module", "gitrepo": "/srv/x"})
        assert bad.status_code == 400 and "is not a dotted Python module path" in bad.json()["detail"]
        huge = ca.post("/queues", content=b'{"name": "' + b"x" * (17 << 20) + b'"}', headers={"content-type": "application/json"})
        assert huge.status_code == 413 and huge.headers["content-type"].startswith(PROBLEM)
        extra = ca.post("/queues", json={"name": "qx", "colour": "red"})
        assert extra.status_code == 422 and extra.headers["content-type"].startswith(PROBLEM)
        page = ca.get("/queues", params={"rows": 2, "page": 3}).json()
        assert page["total"] == 5 and [q["name"] for q in page["items"]] == ["q4"]
        assert ca.patch("/queues/q1", json={"description": "first"}).json()["description"] == "first"
        # B sees none of A's objects, and cannot touch them.
        assert cb.get("/queues").json() == {"items": [], "page": 1, "rows": 100, "total": 0}
        assert cb.get("/queues/q0").status_code == 404
        assert cb.delete("/queues/q0").status_code == 404
        assert cb.post("/queues", json={"name": "q0"}).status_code == 201  # names are unique per owner only
        assert [q["owner"] for q in ca.get("/queues").json()["items"]] == [a] * 5
        assert ca.delete("/queues/q4").status_code == 204
        assert ca.get("/queues").json()["total"] == 4

    # A user without rights is told which right is missing, as the CLI says it.
    c = make_role()
    add_user(flow, db_url, c, rights=())
    with client(api, issue_token(db_url, c)) as cc:
        denied = cc.get("/queues")
        assert denied.status_code == 403 and f"user '{c}' lacks the right LS_QUEUES" in denied.json()["detail"]

    # `flow user token` as the user: works, is listed, and revoking it ends it at once.
    monkeypatch.setenv("ELASTICCODE_DB", db_url)
    assert flow("login", "-n", a, input=PASSWORD + "\n").code == 0
    monkeypatch.delenv("ELASTICCODE_DB")
    issued = flow("user", "token")
    assert issued.code == 0, issued
    token = issued.out.strip()
    with client(api, token) as ct:
        assert ct.get("/whoami").json()["user"] == a
        listed = json.loads(flow("--json", "user", "token", "--list").out)
        assert len(listed) == 2 and all(t["revoked"] is None for t in listed) and token not in json.dumps(listed)
        assert flow("user", "token", "--revoke").code == 0
        assert ct.get("/whoami").status_code == 401
    with get_engine(db_url).connect() as conn:  # only the hash is kept
        stored = conn.exec_driver_sql("SELECT token_hash FROM api_token").scalars().all()
        # No live token left: the API's role may no longer become A at all (B's token keeps B's membership).
        members = conn.exec_driver_sql(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles a "
            "ON a.oid = m.member WHERE a.rolname = 'elasticcode_api' AND g.rolname IN (%(a)s, %(b)s)", {"a": a, "b": b}
        ).scalars().all()
    assert token not in stored and len(stored) >= 4
    assert members == [b]

    # The server's own login reads nothing by itself: no superuser, no BYPASSRLS, no table rights.
    conn = psycopg2.connect(api_login.replace("postgresql+psycopg2://", "postgresql://", 1))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == (False, False)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT * FROM queue")
    conn.close()


async def _read_ws(url: str, token: str, seconds: float, until=None, browser: bool = False) -> list[dict]:
    import websockets

    messages: list[dict] = []
    # A browser cannot set headers on a WebSocket: it offers the token as a subprotocol instead.
    auth = ({"subprotocols": ["bearer", f"bearer.{token}"]} if browser
            else {"additional_headers": {"Authorization": f"Bearer {token}"}})
    async with websockets.connect(url, **auth) as ws:
        assert ws.subprotocol == ("bearer" if browser else None)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            messages.append(json.loads(raw))
            if until and until(messages):
                break
    return messages


class WsReader(threading.Thread):
    def __init__(self, url: str, token: str, seconds: float, until=None, browser: bool = False):
        super().__init__(daemon=True)
        self.args, self.messages, self.error = (url, token, seconds, until, browser), [], None

    def run(self) -> None:
        try:
            self.messages = asyncio.run(_read_ws(*self.args))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_run_calls_history_events_and_metrics(api, users, services, home, tmp_path):
    (a, token_a), (_b, token_b) = users["a"], users["b"]
    repo = make_repo(tmp_path / "repo", FUNCTIONS)
    ws = api.replace("http://", "ws://")
    with client(api, token_a) as ca:
        assert ca.post("/queues", json={"name": "aq"}).status_code == 201
        made = ca.post("/processors", json={"name": "ap", "module": MODULE, "gitrepo": str(repo.working_tree_dir),
                                            "concurrency": 2, "hostname": "localhost"})
        assert made.status_code == 201, made.text
        for function in ("do_something", "boom"):
            assert ca.post("/sockets", json={"name": f"ap.{function}", "processor": "ap", "queue": "aq",
                                             "function": function}).status_code == 201
        agent = AgentProcess(home / "agent", services).start()
        try:
            warm = ca.post("/sockets/ap.do_something/run", json={"args": ["warm"], "timeout": 120})
            assert warm.status_code == 200 and warm.json()["result"] == "TEXT:warm", warm.text
            failed = ca.post("/sockets/ap.boom/run", json={"args": [1], "timeout": 60}).json()
            assert failed["state"] == "failed" and "boom 1" in failed["error"]
            queued = ca.post("/sockets/ap.do_something/run", json={"args": ["later"], "wait": False})
            assert queued.status_code == 202
            call_id = queued.json()["id"]
            wait_until(lambda: ca.get(f"/calls/{call_id}").json().get("state") == "finished", 30, what="async call recorded")
            detail = ca.get(f"/calls/{call_id}").json()
            assert [e["name"] for e in detail["events"]][:1] == ["queued"] and detail["owner"] == a
            assert ca.get(f"/calls/{call_id}/result").json()["result"] == "TEXT:later"
            # B can neither see nor run A's things, even with a processor of the same name (names are per owner).
            with client(api, token_b) as cb:
                assert cb.post("/processors", json={"name": "ap", "module": MODULE, "gitrepo": str(repo.working_tree_dir),
                                                    "requested_status": "stopped"}).status_code == 201
                assert cb.get(f"/calls/{call_id}").status_code == 404
                assert cb.post("/sockets/ap.do_something/run", json={"args": [1], "timeout": 5}).status_code == 404

            # No token, no WebSocket.
            import websockets
            from websockets.exceptions import InvalidStatus

            async def refused() -> int:
                with pytest.raises(InvalidStatus) as info:
                    async with websockets.connect(f"{ws}/ws/events"):
                        pass
                return info.value.response.status_code

            assert asyncio.run(refused()) == 401

            # A burst of 200 calls while A's and B's event sockets and A's metrics socket listen.
            events = WsReader(f"{ws}/ws/events?processor=ap", token_a, 90,
                              until=lambda ms: sum(m.get("state") in ("postrun", "failure") for m in ms) >= 200)
            others = WsReader(f"{ws}/ws/events", token_b, 20, browser=True)
            figures = WsReader(f"{ws}/ws/metrics", token_a, 6.5)
            for reader in (events, others, figures):
                reader.start()
            time.sleep(1.0)

            async def burst() -> list[str]:
                async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token_a}"}, timeout=60) as h:
                    replies = await asyncio.gather(*(h.post("/sockets/ap.do_something/run", json={"args": [i], "wait": False})
                                                     for i in range(200)))
                return [r.json()["id"] for r in replies]

            ids = asyncio.run(burst())
            for reader in (events, others, figures):
                reader.join(100)
                assert reader.error is None, reader.error
            by_call: dict[str, list[str]] = {}
            for m in events.messages:
                if m.get("type") == "event":
                    by_call.setdefault(m["call"], []).append(m["state"])
            assert not [m for m in events.messages if m.get("type") == "skipped"]
            for i in ids:
                assert by_call.get(i) == ["queued", "received", "prerun", "postrun"], (i, by_call.get(i))
            assert not [m for m in others.messages if m.get("type") == "event"]  # B sees none of A's events
            ticks = [m for m in figures.messages if m.get("type") == "metrics"]
            assert len(ticks) >= 3, figures.messages
            gaps = [t2["ts"] - t1["ts"] for t1, t2 in zip(ticks, ticks[1:], strict=False)]
            assert 0.8 < statistics.median(gaps) < 1.2 and max(gaps) < 2.5, gaps  # once a second (the server is busy with the burst)
            procs = [p for t in ticks for n in t["nodes"] for p in n["processors"]]
            assert procs and {p["processor"] for p in procs} == {"ap"}
            assert {"queue", "busy", "idle", "calls_per_s", "failures_per_s", "p50", "p95"} <= set(procs[-1])

            # Prometheus: parsed by prometheus_client's own parser, A's processor only.
            from prometheus_client.parser import text_string_to_metric_families

            scraped = ca.get("/metrics")
            assert scraped.status_code == 200
            families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
            busy = families["elasticcode_busy_processes"].samples
            assert busy and {s.labels["processor"] for s in busy} == {"ap"}
            quantiles = families["elasticcode_call_duration_seconds"].samples
            assert {s.labels["socket"] for s in quantiles} >= {"ap.do_something"}
            with client(api, token_b) as cb:  # B's scrape holds none of A's processors
                assert 'processor="ap"' not in cb.get("/metrics").text
        finally:
            agent.stop()

        # History over HTTP: JSON, and Arrow that loads into pandas as elasticcode.history() returns it.
        import pyarrow as pa

        import elasticcode

        wait_until(lambda: ca.get("/history", params={"socket": "ap.do_something", "state": "finished"}).json().__len__() == 202,
                   30, what="every call recorded")
        as_json = ca.get("/history", params={"socket": "ap.do_something"}).json()
        assert len(as_json) == 202 and {r["owner"] for r in as_json} == {a}
        reply = ca.get("/history", params={"socket": "ap.do_something"}, headers={"Accept": ARROW})
        assert reply.headers["content-type"] == ARROW
        frame = pa.ipc.open_stream(reply.content).read_all().to_pandas()
        expected = elasticcode.history(socket="ap.do_something")  # the admin's view: the same calls
        assert list(frame.columns) == list(expected.columns)
        assert dict(frame.dtypes) == dict(expected.dtypes), (frame.dtypes, expected.dtypes)
        pd.testing.assert_frame_equal(frame, expected)
        assert ca.get("/history", headers={"Accept": "text/csv"}).status_code == 406


def test_schemathesis_against_the_served_spec(api, users, tmp_path):
    """Every operation of the served document: no server error, and responses that match it."""
    _role, token = users["a"]
    with client(api, token) as ca:  # something to find, besides the fuzzed names
        assert ca.post("/queues", json={"name": "fuzzq"}).status_code == 201
    config = tmp_path / "schemathesis.toml"
    config.write_text('headers = { Authorization = "Bearer ${EC_API_TOKEN}" }\n')
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{api}/openapi.json",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
         "response_headers_conformance",
         "--max-examples", "8", "--phases", "examples,coverage,fuzzing", "--generation-database", "none", "--seed", "1",
         "--workers", "2", "--no-color", "--request-timeout", "30"],
        env={**os.environ, "EC_API_TOKEN": token}, capture_output=True, text=True, timeout=200, cwd=tmp_path)
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_committed_spec_is_the_served_one(api):
    served = httpx.get(f"{api}/openapi.json").json()
    committed = json.loads((Path(__file__).resolve().parents[1] / "docs" / "openapi.json").read_text())
    assert served == committed, "docs/openapi.json is stale: run `flow api spec -o docs/openapi.json`"


def test_a_slow_client_is_told_and_skipped_ahead():
    """Its queue never grows past its bound: it is emptied, and the client told how much it missed."""
    from elasticcode.api.live import Subscriber

    async def fill() -> list[dict]:
        subscriber = Subscriber(lambda m: True, 5)
        for i in range(23):
            subscriber.offer({"type": "event", "n": i})
            assert subscriber.queue.qsize() <= 5
        return [subscriber.queue.get_nowait() for _ in range(subscriber.queue.qsize())]

    left = asyncio.run(fill())
    assert left[0]["type"] == "skipped" and left[-1]["n"] == 22
    assert sum(m["missed"] for m in left if m["type"] == "skipped") + len([m for m in left if m["type"] == "event"]) < 23


def test_events_of_a_call_go_out_in_the_order_of_its_life():
    """The recorders may publish a call's prerun before its received (they come from different
    processes): the hub holds the early one until its predecessor comes, or HOLD seconds."""
    from elasticcode.api.sequence import HOLD, Sequencer

    seq = Sequencer()
    ev = lambda call, state: {"call": call, "state": state}  # noqa: E731
    out = seq.push(ev("a", "queued"), 0.0) + seq.push(ev("a", "prerun"), 0.0)
    assert [m["state"] for m in out] == ["queued"]
    out += seq.push(ev("a", "received"), 0.1) + seq.push(ev("a", "postrun"), 0.2)
    assert [m["state"] for m in out] == ["queued", "received", "prerun", "postrun"]
    assert [m["state"] for m in seq.push(ev("a", "received"), 0.3)] == ["received"]  # a redelivery: at once
    assert seq.push(ev("b", "postrun"), 1.0) == [] and seq.expire(1.0 + HOLD / 2) == []
    assert [m["state"] for m in seq.expire(1.0 + HOLD)] == ["postrun"]  # its start was before we listened


def test_a_server_whose_home_forgets_it_stops_by_itself(api_login, admin_url, redis_base, tmp_path_factory):
    """A stack purged without `flow down` (its run folder deleted) leaves no API server behind."""
    import psutil

    from elasticcode.api import server

    home = tmp_path_factory.mktemp("apiforget")
    env = {"ELASTICCODE_HOME": str(home), "ELASTICCODE_DB": admin_url, "ELASTICCODE_API_DB": api_login,
           "ELASTICCODE_BROKER": redis_base, "ELASTICCODE_BACKEND": redis_base}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("ELASTICCODE_INI", raising=False)
        started = server.start(home, home / "elasticcode.ini", port=0)
    process = psutil.Process(started["pid"])
    time.sleep(3)  # it has seen its state file name it
    server.state_path(home).unlink()
    process.wait(15)  # raises psutil.TimeoutExpired if it keeps running
    assert "Traceback" not in (home / "api.log").read_text()
