"""The `flow` command: one tree for building and running an ElasticCode network.

Errors reach the user as one line on stderr and a non-zero exit (1 for a failed action, 2 for
bad usage); `--debug` adds the traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .. import config
from ..errors import ElasticCodeError
from ..security import redact_text
from .api import api, user_token
from .callcmd import call
from .calls import ls_call, ls_calls  # noqa: F401  (registers `ls calls` and `ls call`)
from .compose import compose
from .context import FlowContext
from .dbcmd import db
from .dead import dead
from .export import export
from .listen import listen
from .node import node
from .objects import add, delete, ls, update
from .placeholders import agent, worker
from .proc import proc
from .scheduler import scheduler
from .session import login, logout, user, whoami
from .stack import down, status, up
from .task import task
from .top import top


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


def _url_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A malformed URL on the command line is bad usage, named here (exit 2), instead of a
    ValueError from deep inside the driver or the redaction of the URL in an error message."""
    if value:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0-65535
            if param.name == "db":
                make_url(value)  # what the engine will parse
        except (ValueError, ArgumentError):
            raise click.BadParameter("not a URL that can be parsed (check the host, the port and the brackets around "
                                     "an IPv6 address)") from None
    return value


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Debug switch: show tracebacks")
@click.option("-d", "--db", default=None, callback=_url_option, help="Database URI")
@click.option("--backend", default=None, callback=_url_option, help="Task queue (result) backend URI")
@click.option("--broker", default=None, callback=_url_option, help="Message broker URI")
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
                 user, compose, scheduler, up, down, status, top, dead, export):
    flow.add_command(_command)


flow.add_command(call)  # `flow call replay`
flow.add_command(api)  # `flow api start|stop|status|spec`
user.add_command(user_token)  # `flow user token`


def _load_plugins() -> None:
    """Commands contributed by other packages (kernel_agent's `agent`) replace placeholders.

    A plugin that fails to load costs one warning line, not the whole CLI: the placeholder stays.
    """
    from importlib.metadata import entry_points

    for point in entry_points(group="elasticcode.commands"):
        module = sys.modules.get(point.module)
        if module is not None and not hasattr(module, point.attr.split(".")[0]):
            continue  # that module is being imported and imported us first: not a failure, nothing to add yet
        try:
            flow.add_command(point.load(), point.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the whole CLI
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"warning: flow command plugin {point.name!r} ({point.value}) failed to load: "
                       f"{exc.__class__.__name__}: {redact_text(reason)}", err=True)


_load_plugins()


def run(args: Sequence[str] | None = None) -> Any:
    """Run `flow` in-process and return the command's value (rows for listings).

    ElasticCodeError propagates so callers (the Jupyter magics) can present it their way.
    """
    return flow.main(args=list(args) if args is not None else None, prog_name="flow", standalone_mode=False)


def one_line(message: str) -> str:
    """`message` as one printable line: line breaks and other control or invisible characters (and
    undecodable argv bytes) escaped, so a name or path quoted in an error neither splits the
    message nor drives the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in message)


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
        if not isinstance(exc, click.exceptions.NoArgsIsHelpError):  # that one's message is the group's help
            exc.message = one_line(exc.message)
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ElasticCodeError as exc:
        if debug:
            traceback.print_exc()
        click.secho(f"Error: {one_line(str(exc))}", err=True, fg="red")
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the one-line contract
        if debug:
            traceback.print_exc()
        message = one_line(redact_text(str(exc).strip().splitlines()[0])) if str(exc).strip() else ""
        click.secho(
            f"Error: unexpected {exc.__class__.__name__}: {message} (run with --debug for details and report it)",
            err=True, fg="red",
        )
        sys.exit(1)
