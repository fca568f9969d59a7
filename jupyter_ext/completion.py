"""Tab completion for `%flow`: subcommands and options, walked from the click command tree."""

from __future__ import annotations

import shlex

NOTEBOOK_COMMANDS = ("graph", "builder", "call")


def candidates(line: str) -> list[str]:
    """What may come next after `line` (the text of the magic so far, without `%flow`)."""
    import click  # here, not at `%load_ext`: the CLI tree is imported on the first Tab

    from elasticcode.cli import flow as flow_group

    try:
        words = shlex.split(line)
    except ValueError:
        return []
    current = "" if line.endswith(" ") or not words else words.pop()
    command: click.Command = flow_group
    for word in words:
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
    options = [opt for p in command.params if isinstance(p, click.Option) for opt in p.opts + p.secondary_opts]
    if current.startswith("-"):
        return sorted(o for o in options if o.startswith(current))
    names = list(command.commands) if isinstance(command, click.Group) else []
    if command is flow_group:
        names += NOTEBOOK_COMMANDS
    return sorted(n for n in set(names) if n.startswith(current))


def complete(ipython, event) -> list[str]:
    text = event.line.split("flow", 1)[1] if "flow" in event.line else ""
    return candidates(text)


def install(ipython) -> None:
    ipython.set_hook("complete_command", complete, str_key="%flow")
    ipython.set_hook("complete_command", complete, str_key="%%flow")
