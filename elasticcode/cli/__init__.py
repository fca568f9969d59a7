"""The `flow` command: one tree for building and running an ElasticCode network.

Errors reach the user as one line on stderr and a non-zero exit (1 for a failed action, 2 for
bad usage); `--debug` adds the traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from .. import config
from ..errors import ElasticCodeError
from ..security import redact_text
from .calls import ls_call, ls_calls  # noqa: F401  (registers `ls calls` and `ls call`)
from .context import FlowContext
from .dbcmd import db
from .objects import add, delete, ls, update
from .runtime import agent, compose, listen, node, proc, scheduler, task, worker
from .session import login, logout, user, whoami
from .stack import down, status, up

EMBEDDED_HINT = "(empty: use `flow up` for the local stack)"


def _configure(ctx: FlowContext) -> None:
    """The manual's `flow --config` prompts, written to the ini file (0600)."""
    s = ctx.settings
    db_url = click.prompt("Database connection URI", default=s.db or "", show_default=bool(s.db), value_proc=str.strip) or None
    backend = click.prompt("Result backend URI", default=s.backend or "", show_default=bool(s.backend)) or None
    broker = click.prompt("Message broker URI", default=s.broker or "", show_default=bool(s.broker)) or None
    if db_url:
        db_url = config.strip_db_password(db_url, s.home / "pgpass")
    config.save(s.ini_path, db=db_url, backend=backend, broker=broker)
    click.echo(f"Configuration file created at {s.ini_path}")
    ctx.settings = config.load(s.ini_path)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Debug switch: show tracebacks")
@click.option("-d", "--db", default=None, help="Database URI")
@click.option("--backend", default=None, help="Task queue (result) backend URI")
@click.option("--broker", default=None, help="Message broker URI")
@click.option("-i", "--ini", default=None, help="flow .ini configuration file")
@click.option("-c", "--config", "configure", is_flag=True, help="Configure ElasticCode (writes the .ini file)")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output")
@click.version_option(package_name="elasticcode")
@click.pass_context
def flow(click_ctx: click.Context, debug: bool, db: str | None, backend: str | None, broker: str | None,
         ini: str | None, configure: bool, as_json: bool) -> None:
    """CLI for creating & managing flow networks"""
    ctx = FlowContext(config.load(ini, db=db, broker=broker, backend=backend), as_json=as_json, debug=debug)
    click_ctx.obj = ctx
    if configure:
        _configure(ctx)
    elif click_ctx.invoked_subcommand is None:
        click.echo(click_ctx.get_help())


for _command in (add, ls, update, delete, db, task, proc, agent, worker, node, listen, login, logout, whoami,
                 user, compose, scheduler, up, down, status):
    flow.add_command(_command)


def _load_plugins() -> None:
    """Commands contributed by other packages (kernel_agent's `agent`) replace placeholders."""
    from importlib.metadata import entry_points

    for point in entry_points(group="elasticcode.commands"):
        try:
            flow.add_command(point.load(), point.name)
        except Exception:  # noqa: BLE001 - a broken plugin must not break the whole CLI
            continue


_load_plugins()


def run(args: Sequence[str] | None = None) -> Any:
    """Run `flow` in-process and return the command's value (rows for listings).

    ElasticCodeError propagates so callers (the Jupyter magics) can present it their way.
    """
    return flow.main(args=list(args) if args is not None else None, prog_name="flow", standalone_mode=False)


def main(args: Sequence[str] | None = None) -> None:
    """Console entry point: one clear line per error, never a traceback unless --debug."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in argv
    try:
        run(argv)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ElasticCodeError as exc:
        if debug:
            traceback.print_exc()
        click.secho(f"Error: {exc}", err=True, fg="red")
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the one-line contract
        if debug:
            traceback.print_exc()
        message = redact_text(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
        click.secho(
            f"Error: unexpected {exc.__class__.__name__}: {message} (run with --debug for details and report it)",
            err=True, fg="red",
        )
        sys.exit(1)
