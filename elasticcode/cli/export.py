"""`flow export openlineage|prov`: the recorded calls as lineage in open standards.

    flow export openlineage --since 1d -o lineage.jsonl      # one OpenLineage run event per line
    flow export openlineage --url http://localhost:5000      # post them to Marquez (or any server)
    flow export prov -o calls.prov.json                      # W3C PROV-JSON

What is exported is what `history()` shows this user (row-level security and LS_CALLS apply).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO

import click

from .context import FlowContext, pass_flow

SINCE_HELP = "Only calls created since: a duration back from now (30m, 2h, 7d) or an ISO date/time"


@click.group()
def export() -> None:
    """Export the call history as lineage: OpenLineage run events or W3C PROV"""


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path in (None, "-"):
        yield sys.stdout
        return
    try:
        with open(path, "w", encoding="utf-8") as out:
            yield out
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {exc.strerror}", param_hint="-o") from None


@export.command("openlineage")
@click.option("--since", default=None, help=SINCE_HELP)
@click.option("-o", "--output", default=None, help="Write the events to this file, one JSON object per line (- : stdout)")
@click.option("--url", default=None, help="Post the events to this OpenLineage server (e.g. Marquez: http://host:5000)")
@click.option("--endpoint", default="api/v1/lineage", show_default=True, help="The server's lineage endpoint (with --url)")
@click.option("--namespace", default="elasticcode", show_default=True, help="The OpenLineage namespace of jobs and datasets")
@pass_flow
def export_openlineage(ctx: FlowContext, since: str | None, output: str | None, url: str | None, endpoint: str,
                       namespace: str) -> int:
    """One OpenLineage run event per call state change (START, COMPLETE, FAIL)"""
    from ..client import lineage

    events = lineage.openlineage_events(since, ctx.settings, namespace=namespace)
    if url:
        posted = lineage.post_openlineage(events, url, endpoint)
        click.echo(f"posted {posted} OpenLineage event(s) to {url}", err=output in (None, "-"))
    if output is not None or not url:
        with _output(output) as out:
            written = lineage.write_openlineage(events, out)
        if output not in (None, "-"):
            click.echo(f"wrote {written} OpenLineage event(s) to {output}")
    return len(events)


@export.command("prov")
@click.option("--since", default=None, help=SINCE_HELP)
@click.option("-o", "--output", default=None, help="Write PROV-JSON to this file (default: stdout)")
@pass_flow
def export_prov(ctx: FlowContext, since: str | None, output: str | None) -> int:
    """The calls as W3C PROV-JSON: calls are activities, results entities, workers and users agents"""
    from prov.model import ProvActivity

    from ..client import lineage

    doc = lineage.prov_document(since, ctx.settings)
    with _output(output) as out:
        lineage.write_prov(doc, out)
    activities = len([r for r in doc.get_records() if isinstance(r, ProvActivity)])
    if output not in (None, "-"):
        click.echo(f"wrote {activities} call(s) as PROV-JSON to {output}")
    return activities
