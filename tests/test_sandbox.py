"""Processor code runs sandboxed (security review, issue 10), with real agents and workers.

1. A socket function tries every way we know to get at the database: the agent's home (pgpass,
   ini, stack state), the agent's environment through /proc, its own environment, and psycopg2
   connections with every credential it found. It must get nothing, and every connection must
   be refused.
2. Agents own their workers: a worker left behind by an agent killed with -9 is stopped by the
   next agent (and by `stop_orphan_workers`, what `flow down` calls), so `flow proc stop` leaves
   no worker behind to run calls.
"""

from __future__ import annotations

import os
import signal
import stat
import time
import warnings

import psutil
import pytest
from runtime_helpers import AgentProcess, flow_json, make_repo, wait_until

from elasticcode import config
from elasticcode.client.dispatch import Dispatcher
from elasticcode.embedded.workers import run_dir_for, stop_orphan_workers
from elasticcode.runtime.workerspec import WORKER_MODULE
from kernel_agent.sandbox import Sandbox, owner_sandbox

pytestmark = pytest.mark.timeout(600)

MODULE = "probes.probe"
PROBE = '''
import os
import time


def nap(x, seconds=1.0):
    time.sleep(seconds)
    return x


def probe(home, agent_pid, port, roles):
    """Everything this worker can get at that would let it into the database."""
    got = {"uid": os.getuid(), "home": os.environ.get("HOME"), "files": {}, "agent_environ": None,
           "environ": {}, "connections": []}
    homes = {h for h in (os.environ.get("ELASTICCODE_HOME"), home, os.path.expanduser("~/.elasticcode")) if h}
    paths = [os.path.join(h, n) for h in homes for n in ("pgpass", "elasticcode.ini", "stack.json")]
    paths += [p for p in (os.environ.get("ELASTICCODE_INI"), os.environ.get("PGPASSFILE")) if p]
    for path in paths:
        try:
            with open(path) as f:
                got["files"][path] = f.read()
        except OSError:
            pass
    try:
        with open(f"/proc/{agent_pid}/environ", "rb") as f:
            got["agent_environ"] = f.read().decode(errors="replace")
    except OSError:
        pass
    got["environ"] = {k: v for k, v in os.environ.items()
                      if k.startswith(("ELASTICCODE", "PG")) or k in ("DATABASE_URL", "SECRET_OF_THE_AGENT")}

    # Every credential found: passwords of pgpass lines (host:port:db:user:password), URLs.
    passwords = {None, ""}
    for text in list(got["files"].values()) + [got["agent_environ"] or ""]:
        for line in text.replace("\\0", "\\n").splitlines():
            parts = line.split(":")
            if len(parts) >= 5:
                passwords.add(parts[-1])
            if "PASSWORD=" in line:
                passwords.add(line.split("PASSWORD=", 1)[1])
    dsns = [v for v in got["environ"].values() if v.startswith("postgres")]
    import psycopg2

    attempts = [dict(host="127.0.0.1", port=port, dbname=db, user=role, password=password)
                for role in roles for db in ("elasticcode", "postgres") for password in passwords]
    attempts += [dict(host="127.0.0.1", port=port, dbname="elasticcode", user=role,
                      passfile=os.path.join(h, "pgpass")) for role in roles for h in homes]
    attempts += [dict(dsn=d) for d in dsns]
    for kwargs in attempts:
        try:
            psycopg2.connect(connect_timeout=5, **kwargs).close()
            got["connections"].append(["connected", {k: v for k, v in kwargs.items() if k != "password"}])
        except Exception as exc:
            got["connections"].append(["refused", str(exc).strip().splitlines()[0][:200]])
    return got
'''


def worker_mains(run_dir, processor: str) -> list[psutil.Process]:
    """Main processes of `processor`'s workers in run_dir (pool processes are their children)."""
    specs = {str(path) for path in run_dir.glob(f"{processor}.*json")}  # one spec file per code version
    found = []
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        cmdline = proc.info["cmdline"] or []
        if WORKER_MODULE in cmdline and specs & set(cmdline):
            found.append(proc)
    pids = {p.pid for p in found}
    return [p for p in found if p.info["ppid"] not in pids]


def gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def setup_network(flow, repo, *, requirements: str | None = None) -> None:
    extra = ("-rq", requirements) if requirements else ()
    for args in (
        ("add", "queue", "-n", "sbq", "-t", "direct"),
        ("add", "processor", "-n", "sbproc", "-g", repo.working_tree_dir, "-m", MODULE, "-h", "localhost",
         "-c", "1", *extra),
        ("add", "socket", "-n", "nap", "-q", "sbq", "-pn", "sbproc", "-t", "nap"),
        ("add", "socket", "-n", "probe", "-q", "sbq", "-pn", "sbproc", "-t", "probe"),
    ):
        result = flow(*args)
        assert result.code == 0, result


@pytest.fixture
def probe_repo(tmp_path):
    return make_repo(tmp_path / "probe-repo", PROBE, "probes/probe.py")


def test_processor_code_gets_no_credential(tmp_path, probe_repo, monkeypatch, bare_flow):
    """The machine's PostgreSQL trusts local TCP connections (test machines): any OS user gets in
    as `postgres` without a credential, which is that machine's configuration, not a leak. So the
    agent here runs on an embedded stack (SCRAM for every connection, passwords in the home's
    pgpass), like `test_database_outage_delays_provenance_but_loses_none`, and the worker tries
    its connections there: without a leaked credential none can succeed."""
    from elasticcode import embedded
    from elasticcode.db import schema
    from elasticcode.db.engine import dispose_all
    from elasticcode.embedded import postgres as embedded_pg
    from elasticcode.embedded.state import load_state

    home = tmp_path / "sbhome"
    urls = embedded.up(home)
    try:
        schema.init(urls.admin_db)
        schema.enrol(urls.admin_db, urls.app_role)
        passwords = embedded_pg.read_pgpass(home)
        port = load_state(home)["postgres"]["port"]
        # Secrets the agent holds in its home and environment, as a real one may.
        ini = home / "elasticcode.ini"
        admin_password = passwords[embedded_pg.ADMIN_ROLE]
        ini.write_text(f"[database]\nuri = {urls.db}\nadmin_uri = {urls.admin_db}\n"
                       f"# postgresql://{embedded_pg.ADMIN_ROLE}:{admin_password}@127.0.0.1:{port}/elasticcode\n")
        ini.chmod(0o600)
        env = {"ELASTICCODE_DB": urls.db, "ELASTICCODE_ADMIN_DB": urls.admin_db, "ELASTICCODE_BROKER": urls.broker,
               "ELASTICCODE_BACKEND": urls.backend}
        from elasticcode.embedded import stack

        if hasattr(stack, "ensure_service_role"):  # agents connect as the service role when there is one
            env["ELASTICCODE_SERVICE_DB"] = stack.ensure_service_role(home)
            passwords = embedded_pg.read_pgpass(home)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        # (not PGPASSWORD: libpq would prefer it to the pgpass the agent's URLs name)
        secrets = {"ELASTICCODE_INI": str(ini), "PGPASSFILE": str(home / "pgpass"), "PGCONNECT_TIMEOUT": "20",
                   "DATABASE_URL": urls.admin_db, "SECRET_OF_THE_AGENT": f"PASSWORD={admin_password}"}
        Dispatcher.forget_all()
        agent = AgentProcess(home, {**env, **secrets}).start()
        try:
            setup_network(bare_flow, probe_repo, requirements="psycopg2-binary")
            dispatcher = Dispatcher.for_settings(config.load())
            roles = [embedded_pg.ADMIN_ROLE, urls.app_role, "elasticcode_agent", "postgres", "elasticcode", "root"]
            result = dispatcher.send("probe", (str(home), agent.process.pid, port, roles))
            wait_until(result.ready, 300, 1, what=f"the probe to run: {agent.output()[-1000:]}")
            got = result.get(timeout=10)
        finally:
            agent.stop()
        output = agent.output()
        from elasticcode.embedded import redis as embedded_redis

        lay = embedded_redis.layout(home)  # the worker reached Redis through its socket, and nothing else
        assert stat.S_IMODE((home / "run").stat().st_mode) == 0o700
        if Sandbox.for_agent().separate:
            folder = lay["socket"].parent.stat()
            assert (folder.st_uid, folder.st_gid, stat.S_IMODE(folder.st_mode)) == (0, Sandbox.for_agent().gid, 0o2710)
            assert stat.S_IMODE(lay["socket"].stat().st_mode) == 0o770
    finally:
        dispose_all()
        embedded.purge(home)

    sandbox = owner_sandbox(urls.app_role)
    if sandbox.separate:  # as root: workers run as their owner's worker user, in a run dir of their own
        assert got["uid"] == sandbox.uid != 0, got
        assert "workers run as a system user per owner" in output, output[-2000:]
    else:
        assert "the agent's own user: processor code can read what that user can" in output, output[-2000:]
    assert got["home"] == str(run_dir_for(home / "workers") / "sbproc")
    assert got["environ"] == {}, got["environ"]  # no ELASTICCODE_*, PG*, DATABASE_URL, nothing of the agent's
    if sandbox.separate:  # the agent's own user could read its own home and /proc/<agent>/environ
        assert got["files"] == {}, got["files"]
        assert got["agent_environ"] is None
    assert not any(p and p in str(got) for p in passwords.values())
    assert got["connections"] and all(state == "refused" for state, _ in got["connections"]), got["connections"]
    assert all("password" in why or "authentication" in why for _, why in got["connections"]), got["connections"]


@pytest.fixture
def agent_home(services, home):
    return home / "agent"


def _kill_9(agent: AgentProcess) -> None:
    agent.process.send_signal(signal.SIGKILL)
    agent.process.wait(10)


def test_a_new_agent_stops_the_workers_of_a_killed_one(flow, agent_home, services, probe_repo):
    run_dir = run_dir_for(agent_home / "workers")
    first = AgentProcess(agent_home, services).start()
    second = None
    try:
        setup_network(flow, probe_repo)
        dispatcher = Dispatcher.for_settings(config.load())
        assert dispatcher.send("nap", ("warm", 0.1)).get(timeout=300) == "warm"
        [orphan] = worker_mains(run_dir, "sbproc")
        _kill_9(first)
        time.sleep(1)
        assert not gone(orphan) and orphan.ppid() != first.process.pid  # an orphan, still consuming

        second = AgentProcess(agent_home, services).start()
        wait_until(lambda: gone(orphan), 60, what="the new agent to stop the orphaned worker")
        mains = wait_until(lambda: worker_mains(run_dir, "sbproc"), 120, what="the new agent's worker")
        assert dispatcher.send("nap", ("again", 0.1)).get(timeout=120) == "again"
        assert len(worker_mains(run_dir, "sbproc")) == 1 and worker_mains(run_dir, "sbproc")[0].pid == mains[0].pid

        assert flow("proc", "stop", "-n", "sbproc").code == 0
        wait_until(lambda: not worker_mains(run_dir, "sbproc"), 60, what="flow proc stop to stop the worker")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            after = [dispatcher.send("nap", (i, 0.01)) for i in range(10)]
        time.sleep(5)
        ran = [r for r in after if r.ready()]
        states = {c["id"]: c["state"] for c in flow_json(flow, "ls", "calls", "-r", "1000")}
        ran_recorded = [r.id for r in after if states.get(r.id, "queued") not in ("queued",)]
        assert (len(ran), len(ran_recorded)) == (0, 0), (ran, ran_recorded, second.output()[-2000:])
        assert not worker_mains(run_dir, "sbproc")
    finally:
        for agent in (second, first):
            if agent:
                agent.stop()
    assert not list(run_dir.glob("*.pid"))  # a clean stop leaves no pidfile behind


def test_stop_orphan_workers_stops_what_a_killed_agent_left(flow, agent_home, services, probe_repo):
    run_dir = run_dir_for(agent_home / "workers")
    agent = AgentProcess(agent_home, services).start()
    try:
        setup_network(flow, probe_repo)
        dispatcher = Dispatcher.for_settings(config.load())
        assert dispatcher.send("nap", ("warm", 0.1)).get(timeout=300) == "warm"
        [orphan] = worker_mains(run_dir, "sbproc")
        family = [orphan, *orphan.children(recursive=True)]
        assert (run_dir / "sbproc.pid").exists()
        _kill_9(agent)
        assert not gone(orphan)
        assert stop_orphan_workers(agent_home, timeout=10) == 1
        assert all(gone(p) for p in family)
        assert not (run_dir / "sbproc.pid").exists()
        assert stop_orphan_workers(agent_home, timeout=10) == 0
    finally:
        agent.stop()


SPY = '''
import os


def nap(x, seconds=1.0):
    import time
    time.sleep(seconds)
    return x


def spy(paths, pids):
    """What this worker can read of another owner's: files and folders, and its processes' /proc."""
    got = {"uid": os.getuid(), "read": {}, "refused": {}}
    for path in paths:
        try:
            if os.path.isdir(path):
                got["read"][path] = sorted(os.listdir(path))
            else:
                with open(path, "rb") as f:
                    got["read"][path] = f.read(200).decode(errors="replace")
        except OSError as exc:
            got["refused"][path] = exc.__class__.__name__
    for pid in pids:
        for name in ("environ", "mem", "cwd", "maps"):
            path = f"/proc/{pid}/{name}"
            try:
                if name == "cwd":
                    got["read"][path] = os.listdir(path)
                else:
                    with open(path, "rb") as f:
                        got["read"][path] = f.read(100).decode(errors="replace")
            except OSError as exc:
                got["refused"][path] = exc.__class__.__name__
    return got
'''

SECRET_CODE = '''
SECRET = "{marker}"


def secret(x):
    return SECRET + str(x)
'''


def login_as(flow, db_url: str, role: str, monkeypatch) -> None:
    from test_security import login

    from elasticcode.client import settings

    login(flow, db_url, role, monkeypatch)
    Dispatcher.forget_all()
    settings.reset_settings()


@pytest.mark.skipif(os.geteuid() != 0, reason="one worker user per owner only under a root agent")
def test_one_owners_processor_code_cannot_reach_anothers(flow, db_url, services, home, make_role, monkeypatch, tmp_path):
    """Joe's socket function tries to read Ann's checkout, worker spec and worker home, and her
    worker's /proc files; it may read its own checkout (so the probe can succeed)."""
    import uuid

    from test_security import PASSWORD

    from elasticcode.embedded.users import owner_user_name
    from kernel_agent.code import CODE_ROOT

    joe, ann = make_role(), make_role()
    for user in (joe, ann):
        assert flow("add", "user", "-n", user, input=f"{PASSWORD}\n{PASSWORD}\n").code == 0
        assert flow("add", "privilege", "-u", user, "-n", "ALL").code == 0
    marker = f"ANN-SECRET-{uuid.uuid4().hex}"
    spy_repo = make_repo(tmp_path / "spy-repo", SPY, "probes/probe.py")
    ann_repo = make_repo(tmp_path / "ann-repo", SECRET_CODE.format(marker=marker), "probes/probe.py")
    agent = AgentProcess(home / "agent", services).start()
    try:
        login_as(flow, db_url, ann, monkeypatch)
        for args in (("add", "queue", "-n", "annq"),
                     ("add", "processor", "-n", "annproc", "-g", ann_repo.working_tree_dir, "-m", MODULE, "-h", "localhost"),
                     ("add", "socket", "-n", "secret", "-q", "annq", "-pn", "annproc", "-t", "secret")):
            assert flow(*args).code == 0
        assert Dispatcher.for_settings(config.load()).send("secret", (1,)).get(timeout=300) == marker + "1"

        login_as(flow, db_url, joe, monkeypatch)
        for args in (("add", "queue", "-n", "joeq"),
                     ("add", "processor", "-n", "joeproc", "-g", spy_repo.working_tree_dir, "-m", MODULE, "-h", "localhost"),
                     ("add", "socket", "-n", "spy", "-q", "joeq", "-pn", "joeproc", "-t", "spy")):
            assert flow(*args).code == 0
        joes = Dispatcher.for_settings(config.load())
        joes.send("spy", ([], [])).get(timeout=300)  # deployed and running

        run_dir = run_dir_for(home / "agent" / "workers")
        [ann_worker] = worker_mains(run_dir, "annproc")
        [joe_worker] = worker_mains(run_dir, "joeproc")
        [ann_code] = [p for p in (CODE_ROOT / "code").iterdir() if p.name.endswith(owner_user_name(ann))]
        [joe_code] = [p for p in (CODE_ROOT / "code").iterdir() if p.name.endswith(owner_user_name(joe))]
        ann_spec = next(run_dir.glob("annproc.*.json"))
        ann_paths = [str(ann_code), str(ann_code / "probes" / "probe.py"), str(ann_spec), str(run_dir / "annproc")]
        got = joes.send("spy", (ann_paths + [str(joe_code / "probes" / "probe.py")], [ann_worker.pid])).get(timeout=60)
        uids = {"joe": joe_worker.uids().real, "ann": ann_worker.uids().real}
    finally:
        agent.stop()
    assert got["uid"] == owner_sandbox(joe).uid == uids["joe"] != uids["ann"] == owner_sandbox(ann).uid, (got, uids)
    assert list(got["read"]) == [str(joe_code / "probes" / "probe.py")], got  # its own code, nothing of Ann's
    assert sorted(got["refused"]) == sorted(ann_paths + [f"/proc/{ann_worker.pid}/{n}" for n in ("environ", "mem", "cwd", "maps")]), got
    assert marker not in str(got)
