"""Dead letters you can work with: `flow dead ls | show | retry | purge` and the Python API, with a
real agent and worker: a poison message (it kills its pool process) ends in `ec:dead`; after the
fix, a retry completes it under the same call id and it flows on along its plug."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from celery.signals import before_task_publish
from runtime_helpers import flow_json, make_repo, wait_until

import elasticcode
from elasticcode import config
from elasticcode.client import dead
from elasticcode.client.dispatch import Dispatcher
from elasticcode.runtime import naming, signing
from elasticcode.runtime.connections import redis_client

pytestmark = pytest.mark.timeout(240)

CODE = '''
import os


def poison(folder):
    """Kills its own pool process while the folder holds a file named `poison`."""
    if os.path.exists(os.path.join(folder, "poison")):
        os.kill(os.getpid(), 9)
    return "survived"


def after(text):
    return "after " + text
'''


@pytest.fixture
def folder():
    path = Path(tempfile.mkdtemp(prefix="ec-dead-"))
    path.chmod(0o777)  # the worker runs as its owner's system user
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _network(flow, tmp_path) -> None:
    repo = make_repo(tmp_path / "repo", CODE, "deadmod/funcs.py")
    for args in (("add", "queue", "-n", "dq"),
                 ("add", "processor", "-n", "dproc", "-g", repo.working_tree_dir, "-m", "deadmod.funcs", "-h", "localhost"),
                 ("add", "socket", "-n", "poison", "-q", "dq", "-pn", "dproc", "-t", "poison"),
                 ("add", "socket", "-n", "after", "-q", "dq", "-pn", "dproc", "-t", "after"),
                 ("add", "plug", "-n", "onward", "-s", "poison", "-t", "after")):
        result = flow(*args)
        assert result.code == 0, result


def test_poison_messages_are_listed_shown_and_retried_under_their_call_ids(flow, agent, tmp_path, folder, monkeypatch):
    """Two poison calls. A: retried as its entry is written today (no signature kept: this process,
    the call's user, signs it again). B: its entry rewritten as a worker would write it with the
    message's task, queue and headers (signature included), and retried by a process holding no
    key at all: the worker's check passes on the original signature."""
    _network(flow, tmp_path)
    (folder / "poison").write_text("")
    (folder / "poison").chmod(0o644)
    sent = flow("task", "run", "-s", "poison", "-d", json.dumps(str(folder)), "--async")
    assert sent.code == 0, sent
    a = sent.out.strip().split()[-1]
    uuid.UUID(a)
    published: dict[str, dict] = {}

    def capture(headers=None, routing_key=None, **_):
        published[headers["id"]] = {"headers": dict(headers), "queue": routing_key}

    before_task_publish.connect(capture, weak=False)
    try:
        b = Dispatcher.for_settings(config.load()).send("poison", (str(folder),)).id
    finally:
        before_task_publish.disconnect(capture)
    assert published[b]["headers"][naming.H_SIGNATURE]

    listed = wait_until(lambda: (rows := flow_json(flow, "dead", "ls")) and len(rows) == 2 and rows, 150,
                        what="two dead letters")
    assert {r["call"] for r in listed} == {a, b}, listed
    assert all(r["socket"] == "poison" and r["kind"] == "dead" and r["deliveries"] == 6 and r["retryable"] for r in listed)
    shown = flow("dead", "show", a)
    assert shown.code == 0 and json.loads(shown.out)["entry"]["args"] == [str(folder)], shown
    frame = dead.dead_letters()
    assert set(frame["call"]) == {a, b} and frame["retryable"].tolist() == [True, True]
    client = redis_client(config.load().backend)
    assert [int(client.get(naming.deliveries_key(c))) for c in (a, b)] == [6, 6]

    def recorded_dead():
        rows = elasticcode.history(socket="poison")
        return [rows] if len(rows) == 2 and (rows["state"] == "dead").all() else None

    wait_until(recorded_dead, 30, what="the calls recorded as dead")

    (folder / "poison").unlink()  # the fix
    retried = flow("dead", "retry", a)
    assert retried.code == 0 and f"retried 1 call(s): {a}" in retried.out, retried

    # B's entry as the worker would write it with the message kept (the runtime change asked for)
    raw = next(r for r in client.lrange(naming.DEAD_LETTER_LIST, 0, -1) if json.loads(r)["call"] == b)
    entry = json.loads(raw)
    headers = published[b]["headers"]
    entry.update(task=headers["task"], queue=published[b]["queue"],
                 headers={k: v for k, v in headers.items() if k.startswith("ec_")})
    client.lrem(naming.DEAD_LETTER_LIST, 1, raw)
    client.lpush(naming.DEAD_LETTER_LIST, json.dumps(entry))
    with monkeypatch.context() as patch:  # a retrier that holds no key: the message goes with its own signature
        patch.setattr(signing, "KEYS", {})
        patch.setattr(Dispatcher, "sign_calls", lambda self: None)
        handles = dead.retry([b])
    assert [h.id for h in handles] == [b]
    assert flow_json(flow, "dead", "ls") == []

    results = Dispatcher.for_settings(config.load())
    assert results.result(a).get(timeout=90) == "survived", agent.output()[-3000:]
    assert handles[0].get(timeout=90) == "survived", agent.output()[-3000:]
    assert [int(client.get(naming.deliveries_key(c))) for c in (a, b)] == [1, 1]  # fresh delivery counts

    def children():
        rows = elasticcode.history(socket="after")
        return [rows] if len(rows) == 2 and (rows["state"] == "finished").all() else None

    after = wait_until(children, 30, what="the plug's calls after the retries")[0]
    assert set(after["parent"]) == {a, b} and set(after["tracking"]) == {a, b}  # provenance kept
    assert len(elasticcode.history(socket="poison")) == 2  # still two calls, the same ids

    def finished():
        rows = elasticcode.history(socket="poison")
        return [rows] if (rows["state"] == "finished").all() and rows["error"].isna().all() else None

    try:
        rows = wait_until(finished, 30, what="the retried calls' rows to end finished, without the dead letter's error")[0]
    except AssertionError:
        raise AssertionError(elasticcode.history(socket="poison")[["state", "error", "deliveries"]].to_dict("records")) from None
    assert sorted(rows["id"]) == sorted((a, b)) and (rows["deliveries"] == 1).all()


def test_refused_letters_cannot_be_retried_and_purge_asks_first(flow, services):
    client = redis_client(config.load().backend)
    refused = [str(uuid.uuid4()) for _ in range(2)]
    for call in refused:  # as a worker refuses a message whose signature does not hold (runtime/sockettask.py)
        client.lpush(naming.DEAD_LETTER_LIST, json.dumps({"call": call, "socket": "mark", "refused": "not signed",
                                                          "sent_as": "mallory", "worker": "w@n", "at": time.time()}))
    listed = flow_json(flow, "dead", "ls")
    assert [r["call"] for r in listed] == refused[::-1] and {r["kind"] for r in listed} == {"refused"}
    assert all(r["retryable"] is False and r["reason"] == "refused: not signed" for r in listed)

    cannot = flow("dead", "retry", refused[0])
    assert cannot.code == 1 and "does not hold the message" in cannot.err, cannot
    assert flow("dead", "retry").code == 2
    unknown = flow("dead", "show", str(uuid.uuid4()))
    assert unknown.code == 1 and "no dead letter" in unknown.err
    assert flow("dead", "retry", "--all").code == 0  # nothing retryable: nothing sent, nothing lost
    assert client.llen(naming.DEAD_LETTER_LIST) == 2

    declined = flow("dead", "purge", input="n\n")
    assert declined.code == 1 and client.llen(naming.DEAD_LETTER_LIST) == 2, declined
    one = flow("dead", "purge", refused[0], "--yes")
    assert one.code == 0 and "removed 1" in one.out and client.llen(naming.DEAD_LETTER_LIST) == 1
    assert dead.purge() == 1 and client.llen(naming.DEAD_LETTER_LIST) == 0
    assert len(dead.dead_letters()) == 0
    assert "no dead letters" in flow("dead", "purge", "--yes").out


def test_an_entry_that_carries_its_message_is_sent_again_with_its_own_signature(flow, services):
    """The entry format a worker writes when it keeps the message (task, queue, headers with the
    signature, or the body as sent): retried by anyone with the broker, the message goes out
    with its signature as it was, so the worker's check decides, not the retrier's key."""
    client = redis_client(config.load().backend)
    signature = "ab" * 32
    calls = [str(uuid.uuid4()) for _ in range(2)]
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    entries = [
        {"call": calls[0], "socket": "mark", "args": ["x"], "kwargs": {"n": 1}, "deliveries": 6, "at": time.time()},
        {"call": calls[1], "socket": "mark", "refused": "the signature does not match", "worker": "w@n", "at": time.time(),
         "body": json.dumps([["y"], {}, embed])},
    ]
    for call, entry in zip(calls, entries, strict=True):
        entry.update(task="mark", queue="nowhere.q", headers={naming.H_TRACKING: call, naming.H_USER: "mallory",
                                                               naming.H_SIGNATURE: signature})
        client.lpush(naming.DEAD_LETTER_LIST, json.dumps(entry))
        client.set(naming.deliveries_key(call), 6)
    listed = flow_json(flow, "dead", "ls")
    assert sorted(r["call"] for r in listed) == sorted(calls) and all(r["retryable"] for r in listed), listed
    assert {r["user"] for r in listed} == {"mallory"}

    retried = flow("dead", "retry", "--all")
    assert retried.code == 0 and "retried 2 call(s)" in retried.out, retried
    assert client.llen(naming.DEAD_LETTER_LIST) == 0
    assert not any(client.exists(naming.deliveries_key(call)) for call in calls)  # fresh delivery counts
    messages = [json.loads(raw) for raw in client.lrange("nowhere.q", 0, -1)]
    assert len(messages) == 2
    sent = {}
    for message in messages:
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        sent[message["headers"]["id"]] = (message["headers"], json.loads(body))
    assert set(sent) == set(calls)
    for call in calls:
        headers, _ = sent[call]
        assert headers[naming.H_SIGNATURE] == signature and headers[naming.H_USER] == "mallory"
        assert headers["task"] == "mark" and headers[naming.H_TRACKING] == call
    assert sent[calls[0]][1][:2] == [["x"], {"n": 1}] and sent[calls[1]][1][:2] == [["y"], {}]
