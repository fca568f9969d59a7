"""`flow agent` and `flow worker` without kernel_agent installed: empty groups whose help says
what to install. kernel_agent's `elasticcode.commands` entry points replace them."""

from __future__ import annotations

import click


@click.group()
def agent() -> None:
    """Commands for remote agent management (install kernel_agent to run one)"""


@click.group()
def worker() -> None:
    """Run flow worker (install kernel_agent to run one)"""
