"""What every `flow` command gets: resolved settings, output mode, database sessions.

Listings print, in this order of choice: JSON (`--json`), CSV (`--csv`: a header, then every
field of every row, for pandas.read_csv), a rich table in a terminal or a notebook (as wide as
`COLUMNS` when set, else the terminal), and otherwise, in pipes and files, one record per line
with full values in aligned columns, like `docker ps` (so `flow ls calls | grep NAME` works).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from ..config import Settings
from ..db.engine import session_scope


@dataclass
class FlowContext:
    settings: Settings
    as_json: bool = False
    debug: bool = False
    as_csv: bool = False

    @contextlib.contextmanager
    def session(self, admin: bool = False) -> Iterator[Session]:
        self.settings.require_db()  # the admin URL falls back to it, so both need it
        url = self.settings.admin_url if admin else self.settings.db
        with session_scope(url) as session:
            yield session

    @property
    def console(self) -> Console:
        return Console(soft_wrap=False)


pass_flow = click.make_pass_decorator(FlowContext)


def _csv_option(click_ctx: click.Context, param: click.Parameter, value: bool) -> None:
    obj = click_ctx.find_object(FlowContext)
    if value and obj is not None:  # (None when a caller only parses the options)
        obj.as_csv = True


def json_flag(f):
    """`--json` and `--csv` on a listing; `flow --json ...` sets JSON for every command."""
    f = click.option("--csv", is_flag=True, expose_value=False, callback=_csv_option,
                     help="Print CSV (a header, then one row per record) instead of a table")(f)
    return click.option("--json", "as_json", is_flag=True, default=False, help="Print JSON instead of a table")(f)


def output_mode(ctx: FlowContext, as_json: bool = False) -> str:
    """json, csv, table (a terminal or a notebook) or lines (pipes and files)."""
    if (ctx.as_json or as_json) and ctx.as_csv:
        raise click.UsageError("--json and --csv are two formats: pick one")
    if ctx.as_json or as_json:
        return "json"
    if ctx.as_csv:
        return "csv"
    console = ctx.console
    return "table" if console.is_terminal or console.is_jupyter else "lines"


def _cell(value: Any, sep: str = " ") -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _field(value: Any) -> str:
    """A value in a record line: whole, on one line, never empty (so fields stay countable)."""
    text = _cell(value, "T").replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text or "-"


def _lines(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    table = [[c.upper() for c in columns]] + [[_field(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:  # the last column is not padded: no trailing blanks
        click.echo("   ".join([*(v.ljust(w) for v, w in zip(line[:-1], widths[:-1], strict=True)), line[-1]]))


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else _plain(row.get(c)) for c in columns])
    click.echo(out.getvalue(), nl=False)


def emit(ctx: FlowContext, rows: Sequence[dict[str, Any]], title: str, as_json: bool = False,
         columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Print rows (JSON, CSV, a rich table or record lines: see the module) and return them, so
    in-process callers get data. `columns` are the ones a table or record lines show; CSV (those
    first) and JSON carry every field."""
    rows = list(rows)
    mode = output_mode(ctx, as_json)
    if mode == "json":
        click.echo(json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2, default=str))
        return rows
    columns = list(columns or (rows[0].keys() if rows else []))
    every = [*columns, *(k for k in (rows[0] if rows else {}) if k not in columns)]  # shown ones first
    if mode == "csv":
        _csv(rows, every)
    elif not rows:
        click.echo(f"no {title.lower()}", err=mode == "lines")
    elif mode == "lines":
        _lines(rows, columns)
    else:
        table = Table(title=title, title_justify="left", show_lines=False)
        for column in columns:
            table.add_column(column.replace("_", " ").title(), overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        ctx.console.print(table)
    return rows


def say(ctx: FlowContext, message: str, **data: Any) -> None:
    """A one-line confirmation, or a JSON object under --json."""
    if ctx.as_json:
        click.echo(json.dumps({"message": message, **{k: _plain(v) for k, v in data.items()}}, default=str))
    else:
        click.echo(message)
