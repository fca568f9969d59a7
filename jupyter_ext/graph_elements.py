"""What the flow graph draws, as plain data: cytoscape style, element builders and the calls table.

Pure functions of the topology rows (graph.read_topology) and live counts (live.SocketState);
the widget in graph.py decides when to add, update or remove the elements built here.
"""

from __future__ import annotations

import html

from elasticcode.db import model as m

from .graph_layout import FONT_PX, MIN_SOCKET_CHARS, PADDING, label_size
from .live import SocketState

STATE_COLOURS = {"queued": "#bdbdbd", "received": "#9ecae1", "running": "#fd8d3c", "finished": "#74c476",
                 "done": "#74c476", "failed": "#ef3b2c", "dead": "#252525"}

STYLE = [
    {"selector": "node", "style": {
        "label": "data(label)", "text-wrap": "wrap", "text-valign": "center", "text-halign": "center",
        "font-size": FONT_PX, "shape": "round-rectangle", "width": "data(w)", "height": "data(h)",
        "background-color": "#deebf7", "border-width": 1, "border-color": "#6baed6"}},
    {"selector": "node.processor", "style": {
        "text-valign": "top", "font-weight": "bold", "background-color": "#f7f7f7", "background-opacity": 0.6,
        "border-color": "#969696", "padding": f"{PADDING}px"}},
    {"selector": "node.processor.stopped", "style": {"border-style": "dashed", "color": "#737373"}},
    {"selector": "node.processor.error", "style": {"border-color": STATE_COLOURS["failed"], "border-width": 2}},
    *({"selector": f"node.{state}", "style": {"background-color": colour}}
      for state, colour in STATE_COLOURS.items()),
    {"selector": "node.running", "style": {"border-width": 3, "border-color": "#d94801"}},
    {"selector": "edge", "style": {
        "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 2, "line-color": "#636363",
        "target-arrow-color": "#636363", "label": "data(label)", "font-size": FONT_PX, "text-background-color": "#fff",
        "text-background-opacity": 0.8}},
    {"selector": "edge.error", "style": {"line-style": "dashed", "line-color": "#d62728", "target-arrow-color": "#d62728"}},
]
# Positions come from graph_layout (a grid shaped like the widget); cytoscape only fits them, and
# the zoom range keeps labels between about 10 and 16 screen pixels.
LAYOUT = {"name": "preset", "fit": True, "padding": 12, "animate": False}
MIN_ZOOM, MAX_ZOOM = 0.8, 1.25


def socket_id(owner: str, name: str) -> str:
    """A socket node's id: stable across refreshes (names are unique per owner)."""
    return f"s:{owner}/{name}"


def plug_id(source_owner: str, source: str, name: str) -> str:
    """A plug edge's id: its source socket and its name."""
    return f"e:{source_owner}/{source}/{name}"


def box(label: str, min_chars: int = 0) -> dict:
    """Node size from its label: cytoscape's `width: label` is deprecated, data-mapped sizes are not."""
    width, height = label_size(label, min_chars)
    return {"w": round(width, 1), "h": round(height, 1)}


def processes_line(records) -> dict[str, str]:
    """Processor id -> its processes per node, `node1 2/3 · node2 0/1` (busy/pool), from the figures
    the agents publish (`elasticcode.runtime.metrics.latest`)."""
    parts: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: r.node):
        for p in record.processors:
            parts.setdefault(p.processor_id, []).append(f"{record.node} {p.busy}/{p.pool}")
    return {pid: " · ".join(items) for pid, items in parts.items()}


def processor_element(pid: str, p: dict) -> tuple[dict, str]:
    label = f"{p['name']}\n{p['status']} · concurrency {p['concurrency']}"
    if p.get("processes"):
        label += f"\n{p['processes']}"
    classes = "processor" + (f" {p['status']}" if p["status"] in ("error", "stopped") else "")
    return {"id": pid, "kind": "processor", "name": p["name"], "label": label, **box(label)}, classes


def socket_element(sid: str, s: dict, state: SocketState | None) -> tuple[dict, str]:
    label = s["name"] + (f"\n{state.line()}" if state else "")
    classes = "socket " + (state.css_class if state else ("failed" if s["status"] == "error" else ""))
    return ({"id": sid, "kind": "socket", "name": s["name"], "parent": s["processor"], "label": label,
             "tooltip": s["name"], **box(label, MIN_SOCKET_CHARS)}, classes.strip())


def plug_element(eid: str, plug: dict) -> tuple[dict, str]:
    # `directed multiple_edges` up front: ipycytoscape appends them otherwise, and a RESULT and an
    # ERROR plug between the same two sockets are two edges.
    return ({"id": eid, "source": plug["source"], "target": plug["target"], "label": plug["argument"] or "",
             "name": plug["name"]}, f"{plug['type'].lower()} directed multiple_edges")


CALL_FIELDS = ("id", "state", "started", "duration", "worker", "error")


def call_row(call: m.Call) -> dict[str, str]:
    return {"id": call.id[:8], "state": call.state, "started": call.started.strftime("%H:%M:%S") if call.started else "",
            "duration": f"{call.duration:.3f}" if call.duration is not None else "", "worker": call.worker or "",
            "error": (call.error or "")[:80]}


def calls_table(rows: list[dict[str, str]]) -> str:
    """Every value is escaped: errors and worker names come from user code."""
    head = "".join(f"<th>{f}</th>" for f in CALL_FIELDS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[f])}</td>" for f in CALL_FIELDS) + "</tr>" for r in rows)
    return f"<table class='ec-calls' style='font-size:11px'><tr>{head}</tr>{body}</table>"
