"""`python -m elasticcode.api --host 127.0.0.1 --port 8765`: serve the API in the foreground."""

from __future__ import annotations

import argparse
import sys

from ..errors import ElasticCodeError
from .settings import DEFAULT_HOST, DEFAULT_PORT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m elasticcode.api", description="Serve the ElasticCode HTTP API")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        import uvicorn

        from . import settings
        from .app import create_app

        app = create_app(settings.load())
    except ElasticCodeError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)

    # Access log lines hold method, path and status; tokens travel in headers only, never logged.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=False, server_header=False)


if __name__ == "__main__":
    main()
