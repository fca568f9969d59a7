"""ElasticCode errors in the notebook: one line, in the form the user is in; the traceback on `%tb`.

Our errors already say what is wrong and how to fix it in their message, so the frames of the
library above it only hide that line. IPython's custom exception hook shows the line alone,
as an error output (the cell still fails), with hints that name `%flow ...` instead of the
shell's `flow ...`; `%tb` shows the whole traceback.
"""

from __future__ import annotations

import re
import sys

RED, DIM, RESET = "\x1b[0;31m", "\x1b[2m", "\x1b[0m"
SHELL_COMMAND = re.compile(r"`flow(?=[ `])")


def notebook_form(message: str) -> str:
    """A hint's shell command as the notebook's magic: `flow ls sockets` -> `%flow ls sockets`."""
    return SHELL_COMMAND.sub("`%flow", message)


def one_line(message: str) -> str:
    from elasticcode.cli import one_line as printable

    return printable(" ".join(message.split()) if "\n" in message else message)


def show_one_line(shell, etype, value, tb, tb_offset=None) -> list[str]:
    """The custom exception handler: remember the exception for `%tb`, show one line."""
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    if hasattr(sys, "last_exc"):  # Python 3.12+
        sys.last_exc = value
    line = f"{RED}{etype.__name__}{RESET}: {notebook_form(one_line(str(value)))}  {DIM}(full traceback: %tb){RESET}"
    shell._showtraceback(etype, value, [line])
    return [line]


def install(ipython) -> None:
    from elasticcode.errors import ElasticCodeError

    ipython.set_custom_exc((ElasticCodeError,), show_one_line)
