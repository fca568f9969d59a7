"""A stream proxy that holds every chunk for a fixed delay each way: a network's round trip put
in front of a local service, where `tc netem` is not available (this machine's kernel has no
netem qdisc).

    python -m bench.delay_proxy LISTEN_SOCKET TARGET_SOCKET DELAY_MS

Listens on the Unix socket LISTEN_SOCKET (same mode and group as TARGET_SOCKET, so it reaches
exactly who the target does) and forwards each connection to TARGET_SOCKET; bytes go through in
order, each chunk written DELAY_MS after it was read, in both directions. Prints "ready" once it
listens. It costs CPU on the same machine (a real link's cost is the kernel's): about tens of
microseconds per chunk, which the harness reports beside its figures.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(65536):
            # Chunks read later are due later: call_at keeps their order.
            loop.call_at(loop.time() + delay, writer.write, data)
    except (ConnectionError, OSError):
        pass
    loop.call_at(loop.time() + delay, writer.close)


async def _serve(listen: Path, target: Path, delay: float) -> None:
    async def connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(str(target))
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(_pump(client_reader, upstream_writer, delay), _pump(upstream_reader, client_writer, delay))
        except asyncio.CancelledError:  # the proxy stops: its connections with it
            pass

    listen.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(connection, path=str(listen))
    mode = target.stat()
    os.chmod(listen, mode.st_mode & 0o777)
    os.chown(listen, -1, mode.st_gid)
    print("ready", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    listen.unlink(missing_ok=True)


def main(argv: list[str]) -> None:
    listen, target, delay_ms = Path(argv[0]), Path(argv[1]), float(argv[2])
    asyncio.run(_serve(listen, target, delay_ms / 1000))


if __name__ == "__main__":
    main(sys.argv[1:])
