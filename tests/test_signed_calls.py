"""Signed calls (security review, issue 10): with the broker URL alone nobody runs another user's
socket. Real agent, worker, PostgreSQL and Redis; the function leaves a file per run, so a refused
call that ran anyway would be counted."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from celery.signals import before_task_publish
from runtime_helpers import AgentProcess, make_repo, wait_until
from test_security import PASSWORD, libpq, login

from elasticcode import config
from elasticcode.client import settings
from elasticcode.client.dispatch import Dispatcher
from elasticcode.runtime import naming, signing
from elasticcode.runtime.app import make_app
from elasticcode.runtime.connections import coordination_client, redis_client

pytestmark = pytest.mark.timeout(300)

MODULE = "marks.mark"
CODE = '''
import os


def mark(folder, name):
    """Leaves one file per run: the test counts what ran."""
    path = os.path.join(folder, name)
    with open(path, "a") as f:
        f.write("ran\\n")
    return name


def after(name):
    return "after:" + name
'''


def act_as(flow, db_url: str, role: str, monkeypatch) -> Dispatcher:
    login(flow, db_url, role, monkeypatch)
    Dispatcher.forget_all()
    settings.reset_settings()
    return Dispatcher.for_settings(config.load())


def dead_letters(client) -> list[dict]:
    return [json.loads(raw) for raw in client.lrange(naming.DEAD_LETTER_LIST, 0, -1)]


@pytest.fixture
def marks():
    folder = Path(tempfile.mkdtemp(prefix="ec-marks-"))
    folder.chmod(0o777)  # the worker runs as its owner's system user
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_unsigned_foreign_forged_and_tampered_calls_never_run(flow, db_url, services, home, make_role, monkeypatch,
                                                              tmp_path, marks):
    joe, ann = make_role(), make_role()
    for user in (joe, ann):
        assert flow("add", "user", "-n", user, input=f"{PASSWORD}\n{PASSWORD}\n").code == 0
        assert flow("add", "privilege", "-u", user, "-n", "ALL").code == 0
    repo = make_repo(tmp_path / "repo", CODE, "marks/mark.py")
    agent = AgentProcess(home / "agent", services).start()
    try:
        joes = act_as(flow, db_url, joe, monkeypatch)
        for args in (("add", "queue", "-n", "jq"),
                     ("add", "processor", "-n", "jp", "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost"),
                     ("add", "socket", "-n", "mark", "-q", "jq", "-pn", "jp", "-t", "mark"),
                     ("add", "socket", "-n", "after", "-q", "jq", "-pn", "jp", "-t", "after"),
                     ("add", "plug", "-n", "markplug", "-s", "mark", "-t", "after")):
            assert flow(*args).code == 0
        legit = [joes.send("mark", (str(marks), f"legit{i}")) for i in range(3)]
        assert [h.get(timeout=240) for h in legit] == [f"legit{i}" for i in range(3)]
        route = joes.resolve("mark")
        joe_key = signing.KEYS[joe]
        client = redis_client(config.load().require_broker())
        before = len(dead_letters(client))

        anns = act_as(flow, db_url, ann, monkeypatch)
        anns.sign_calls()  # Ann holds a key of her own, and not Joe's
        ann_key = signing.KEYS[ann]
        app = make_app(config.load().require_broker(), config.load().backend)
        sent: dict[str, str] = {}

        def attack(name: str, headers: dict) -> None:
            call_id = str(uuid.uuid4())
            sent[call_id] = name
            app.send_task(route.task, args=[str(marks), name], queue=route.queue, task_id=call_id,
                          headers={naming.H_TRACKING: call_id, **headers})

        signing.KEYS.pop(joe)  # from here on this process is an attacker without Joe's key
        attack("unsigned", {naming.H_USER: joe})
        attack("as-ann", {naming.H_USER: ann})  # signed with Ann's key, naming Ann
        forged = signing.signature(ann_key, "x", route.task, joe, None, None, b"")
        attack("forged", {naming.H_USER: joe, naming.H_SIGNATURE: forged})  # names Joe, Ann's key

        def tamper(body=None, headers=None, **_):
            if headers and headers.get("ec_tamper"):
                body[0][1] = "tampered"  # after the signature was computed over "signed-body"
        signing.KEYS[joe] = joe_key
        before_task_publish.connect(tamper, weak=False, dispatch_uid="test-tamper")
        try:
            attack("signed-body", {naming.H_USER: joe, "ec_tamper": "1"})
        finally:
            before_task_publish.disconnect(dispatch_uid="test-tamper")

        # The calls Joe's worker sent along the plug, signed with his key there, ran.
        def plugged():
            with psycopg2.connect(libpq(db_url)) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM call WHERE name = 'after' AND owner = %s AND state = 'finished'", (joe,))
                return cur.fetchone()[0] >= 3
        wait_until(plugged, 60, what="the three plugged calls recorded as finished")
        refused = wait_until(lambda: (lambda d: d if len(d) - before >= 4 else None)(dead_letters(client)), 60,
                             what="four refused calls in the dead letters")
        time.sleep(2)  # anything that would run anyway has had time to
        events = coordination_client(config.load().require_broker(), config.load().backend)
        wait_until(lambda: events.xlen(naming.EVENTS_STREAM) == 0, 30, what="the recorder to write every event")
        with psycopg2.connect(libpq(db_url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT id::text FROM call WHERE id = ANY(%s::uuid[])", (list(sent),))
            recorded = [row[0] for row in cur.fetchall()]
    finally:
        agent.stop()
    assert recorded == [], recorded  # a refused call records nothing, not even that it was received
    new = {d["call"]: d for d in refused[: len(refused) - before]}
    assert set(new) == set(sent), (new, sent)
    reasons = {sent[call]: entry["refused"] for call, entry in new.items()}
    assert "not signed" in reasons["unsigned"], reasons
    assert f"sent as {ann!r}" in reasons["as-ann"], reasons
    assert "signature does not match" in reasons["forged"], reasons
    assert "signature does not match" in reasons["signed-body"], reasons
    ran = sorted(os.listdir(marks))
    assert ran == [f"legit{i}" for i in range(3)], ran  # 3 sent by Joe, 3 ran; 4 refused, 0 ran
    assert all((marks / name).read_text() == "ran\n" for name in ran)  # once each
    assert [r.state for r in map(app.AsyncResult, sent)] == ["PENDING"] * 4  # no result written for a forger


def test_a_user_without_run_task_gets_no_key_and_one_line(flow, db_url, services, make_role, monkeypatch, tmp_path):
    role = make_role()
    assert flow("add", "user", "-n", role, input=f"{PASSWORD}\n{PASSWORD}\n").code == 0
    for right in ("CREATE", "READ"):  # may add and list, but RUN_TASK has no generic right
        assert flow("add", "privilege", "-u", role, "-n", right).code == 0
    act_as(flow, db_url, role, monkeypatch)
    repo = make_repo(tmp_path / "repo", CODE, "marks/mark.py")
    for args in (("add", "queue", "-n", "nq"), ("add", "processor", "-n", "np", "-g", repo.working_tree_dir, "-m", MODULE),
                 ("add", "socket", "-n", "nsock", "-q", "nq", "-pn", "np", "-t", "after")):
        assert flow(*args).code == 0, args
    run = flow("task", "run", "-s", "nsock", "-d", "1", "--timeout", "5")
    assert run.code == 1 and "lacks the right RUN_TASK" in run.err and len(run.err.strip().splitlines()) == 1, run
    url = config.load().db
    conn = psycopg2.connect(libpq(url))
    try:
        for sql, why in (("SELECT elasticcode_call_key()", "lacks the right RUN_TASK"),
                         ("SELECT elasticcode_call_key_of('postgres')", "denied"),
                         ("SELECT secret FROM call_key", "denied")):
            with pytest.raises(psycopg2.Error, match=why):
                with conn.cursor() as cur:
                    cur.execute(sql)
            conn.rollback()
    finally:
        conn.close()


SECRET_CODE = '''
def secret(tag):
    return "secret-" + tag
'''


def test_results_are_sealed_and_forged_events_are_refused(flow, db_url, services, home, make_role, monkeypatch, tmp_path):
    """Attacks 3b and 3d of the review: read another user's result from the backend with the broker
    URL; add a forged event to the stream that rewrites another user's finished call."""
    joe, ann = make_role(), make_role()
    for user in (joe, ann):
        assert flow("add", "user", "-n", user, input=f"{PASSWORD}\n{PASSWORD}\n").code == 0
        assert flow("add", "privilege", "-u", user, "-n", "ALL").code == 0
    repo = make_repo(tmp_path / "repo", SECRET_CODE, "sealed/box.py")
    agent = AgentProcess(home / "agent", services).start()
    try:
        joes = act_as(flow, db_url, joe, monkeypatch)
        for args in (("add", "queue", "-n", "sq"),
                     ("add", "processor", "-n", "sp", "-g", repo.working_tree_dir, "-m", "sealed.box", "-h", "localhost"),
                     ("add", "socket", "-n", "secret", "-q", "sq", "-pn", "sp", "-t", "secret")):
            assert flow(*args).code == 0
        tag = uuid.uuid4().hex
        handle = joes.send("secret", (tag,))
        assert handle.get(timeout=240) == f"secret-{tag}"  # Joe opens his own result
        call = handle.id
        client = redis_client(config.load().require_broker())

        def recorded():
            with psycopg2.connect(libpq(db_url)) as conn, conn.cursor() as cur:
                cur.execute("SELECT state, result, owner FROM call WHERE id = %s", (call,))
                row = cur.fetchone()
                cur.execute("SELECT count(*), count(*) FILTER (WHERE owner <> %s) FROM event WHERE call_id = %s",
                            (joe, call))
                return row, cur.fetchone()
        wait_until(lambda: recorded()[0] and recorded()[0][0] == "finished", 60, what="Joe's call recorded")
        before = recorded()
        assert before[0] == ("finished", f"secret-{tag}", joe)  # the recorder opened the sealed result

        # With the broker URL alone, the result is ciphertext.
        stored = client.get(f"celery-task-meta-{call}")
        assert stored is not None and tag.encode() not in stored, stored
        assert json.loads(stored)["result"]["ec_sealed"] == joe
        # An event as it goes on the stream carries the result sealed, and signed.
        from elasticcode.runtime.events import POSTRUN, CallEvent, stream_fields
        on_stream = stream_fields(CallEvent.now(call, POSTRUN, socket="secret", user=joe, result=json.dumps(tag)))
        assert tag not in json.dumps(on_stream) and on_stream["sig"]

        anns = act_as(flow, db_url, ann, monkeypatch)
        anns.sign_calls()
        signing.KEYS.pop(joe, None)  # this process is Ann now: her key, not Joe's
        app = make_app(config.load().require_broker(), config.load().backend)
        with pytest.raises(PermissionError, match=f"belongs to {joe!r}"):
            app.AsyncResult(call).get(timeout=10)

        # Forged events for Joe's finished call: unsigned, signed with Ann's key in Joe's name,
        # and signed by Ann as Ann (valid, but the call is not hers).
        rejected_before = client.xlen(naming.EVENTS_REJECTED_STREAM)
        forged = CallEvent.now(call, POSTRUN, socket="secret", processor="sp", user=joe, result=json.dumps("forged"),
                               deliveries=99)
        unsigned = forged.to_fields()
        in_joes_name = dict(unsigned, sig=signing.event_signature(signing.KEYS[ann], unsigned))
        as_ann = stream_fields(CallEvent.now(call, POSTRUN, socket="secret", processor="sp", user=ann,
                                             result=json.dumps("forged"), deliveries=99))
        # And one whose bytes are not UTF-8: refused like any changed event, not a stop to the reads.
        not_text = {**in_joes_name, "socket": b"\xff\xfe"}
        for fields in (unsigned, in_joes_name, as_ann, not_text):
            client.xadd(naming.EVENTS_STREAM, fields)
        wait_until(lambda: client.xlen(naming.EVENTS_STREAM) == 0, 30, what="the recorder to take the forged events")
        time.sleep(1)
    finally:
        agent.stop()
    reasons = [entry[b"error"].decode() for _, entry in client.xrange(naming.EVENTS_REJECTED_STREAM)][rejected_before:]
    assert len(reasons) == 3, reasons  # the three in Joe's name; Ann's own is not news about Joe's call
    assert "not signed" in reasons[0] and "does not match" in reasons[1] and "does not match" in reasons[2], reasons
    assert recorded() == before  # 4 forged events, 0 changes to the call or its events
