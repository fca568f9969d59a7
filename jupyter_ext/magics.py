"""`%flow ARGS`: any `flow` command, run in-process; listings come back as pandas DataFrames."""

from __future__ import annotations

import shlex
from typing import Any

import click
import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from elasticcode.cli import run
from elasticcode.errors import ElasticCodeError


def to_frame(value: Any) -> Any:
    """Listings (lists of rows) become DataFrames; anything else is returned as it is."""
    if isinstance(value, list) and all(isinstance(row, dict) for row in value):
        return pd.DataFrame(value)
    return value


def run_flow(line: str) -> Any:
    """Run one `flow` command line; errors become one-line UsageErrors, the kernel stays alive."""
    try:
        args = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot parse `%flow {line}`: {exc}") from None
    try:
        return to_frame(run(args))
    except ElasticCodeError as exc:
        raise UsageError(str(exc)) from None
    except click.exceptions.Exit:
        return None  # --help, --version
    except click.exceptions.Abort:
        raise UsageError("aborted") from None
    except click.ClickException as exc:
        raise UsageError(exc.format_message()) from None


@magics_class
class FlowMagics(Magics):
    @line_magic
    def flow(self, line: str) -> Any:
        """Run a `flow` command in this kernel: `%flow up`, `df = %flow ls calls`, `%flow task run -s NAME -d {x}`."""
        return run_flow(line)
