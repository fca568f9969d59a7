"""How fast elasticcode.history() loads N recorded calls (default 10k and 100k).

    python bench/history_bench.py postgresql+psycopg2://postgres@127.0.0.1:5432/test

Makes a scratch database on that server, fills it, times history() against a plain
pandas.read_sql of the same rows (the ratio matters more than the seconds on a shared machine).
"""

from __future__ import annotations

import sys
import time
import uuid

import pandas as pd
import psycopg2
from psycopg2 import sql
from sqlalchemy import text

from elasticcode.client.history import history
from elasticcode.config import Settings
from elasticcode.db import schema
from elasticcode.db.engine import dispose_all, get_engine


def main(server: str, sizes=(10_000, 100_000)) -> None:
    name = f"ec_bench_{uuid.uuid4().hex[:8]}"
    libpq = server.replace("postgresql+psycopg2://", "postgresql://")
    admin = psycopg2.connect(libpq)
    admin.autocommit = True
    admin.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.rsplit("/", 1)[0] + "/" + name
    try:
        schema.init(url)
        settings = Settings(db=url)
        for n in sizes:
            with get_engine(url).begin() as conn:
                conn.execute(text("TRUNCATE call CASCADE"))
                conn.execute(text(
                    "INSERT INTO call (id, name, state, tracking, parent, worker, host, started, finished, duration, "
                    "deliveries, created) SELECT gen_random_uuid(), 'sock' || (i % 7), 'finished', gen_random_uuid(), "
                    "gen_random_uuid(), 'proc@host', 'host', now(), now(), 0.005, 1, now() - make_interval(secs => i) "
                    "FROM generate_series(1, :n) AS i"), {"n": n})
            t = time.perf_counter()
            frame = history(settings=settings)
            ours = time.perf_counter() - t
            t = time.perf_counter()
            with get_engine(url).connect() as conn:
                plain = pd.read_sql(text("SELECT * FROM call ORDER BY created, id"), conn)
            theirs = time.perf_counter() - t
            assert len(frame) == len(plain) == n
            print(f"{n:>7} calls: history() {ours:.3f}s, pandas.read_sql {theirs:.3f}s, ratio {ours / theirs:.2f}")
    finally:
        dispose_all()
        admin.cursor().execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
