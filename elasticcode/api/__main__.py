"""`python -m elasticcode.api --host 127.0.0.1 --port 8765`: serve the API in the foreground."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import ElasticCodeError
from .settings import DEFAULT_HOST, DEFAULT_PORT

STATE_CHECK_SECONDS = 2.0


def follow_state(state: Path) -> None:
    """Stop this server once its home no longer names it (`flow down` stops it by pid; this also
    covers a stack purged without `flow down`, or a second `flow up` that replaced the file)."""
    seen = False
    while True:
        time.sleep(STATE_CHECK_SECONDS)
        try:
            ours = json.loads(state.read_text()).get("pid") == os.getpid()
        except (OSError, ValueError, AttributeError):
            ours = False
        if ours:
            seen = True
        elif seen:
            os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m elasticcode.api", description="Serve the ElasticCode HTTP API")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--state", default=None, help=argparse.SUPPRESS)  # set by `flow api start`/`flow up`
    args = parser.parse_args(argv)
    try:
        import uvicorn

        from . import settings
        from .app import create_app

        app = create_app(settings.load())
    except ElasticCodeError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)

    if args.state:
        threading.Thread(target=follow_state, args=(Path(args.state),), name="ec-api-state", daemon=True).start()
    # Access log lines hold method, path and status; tokens travel in headers only, never logged.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=False, server_header=False)


if __name__ == "__main__":
    main()
