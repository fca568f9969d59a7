"""A bounded load test of `flow api` on loopback: 50 concurrent clients for 20 s.

It prints requests per second and the 95th percentile latency for the README; it asserts no
timing (machines differ), only that every request was answered correctly. The clients are plain
HTTP/1.1 keep-alive connections on asyncio streams: on a 2-core machine httpx's own CPU cost, in
the same machine as the server and PostgreSQL, was what the first runs measured (the server's
threads sat idle in a profile), not the server.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from urllib.parse import urlsplit

import httpx
import pytest
from test_api import add_user, api, api_login, issue_token  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(180)
CLIENTS, SECONDS = 50, 20.0
PATHS = ("/queues?rows=10", "/whoami", "/processors/p0", "/calls?rows=5")


LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


async def _client(url: str, token: str, stop: float, latencies: list[float], errors: list[str], offset: int) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        i = offset
        while time.monotonic() < stop:
            path = PATHS[i % len(PATHS)]
            i += 1
            began = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(int(LENGTH.search(head).group(1)))
            latencies.append(time.perf_counter() - began)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(f"{path}: {head[:40]!r} {body[:200]!r}")
    finally:
        writer.close()


def test_fifty_clients_for_twenty_seconds(api, flow, db_url, make_role, services, capsys):  # noqa: F811
    role = make_role()
    add_user(flow, db_url, role)
    token = issue_token(db_url, role)
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}) as h:
        for i in range(10):
            assert h.post("/queues", json={"name": f"q{i}"}).status_code == 201
        assert h.post("/processors", json={"name": "p0", "module": "pkg.mod", "gitrepo": "/srv/git/x",
                                           "requested_status": "stopped"}).status_code == 201
    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> float:
        began = time.monotonic()
        await asyncio.gather(*(_client(api, token, began + SECONDS, latencies, errors, n) for n in range(CLIENTS)))
        return time.monotonic() - began

    elapsed = asyncio.run(run())
    assert not errors, errors[:5]
    p95 = statistics.quantiles(latencies, n=100)[94]
    with capsys.disabled():
        print(f"\nflow api load: {CLIENTS} clients x {SECONDS:g} s on loopback: {len(latencies)} requests, "
              f"{len(latencies) / elapsed:.0f} requests/s, p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p95 {p95 * 1000:.1f} ms")
