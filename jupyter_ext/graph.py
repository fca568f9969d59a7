"""`%flow graph`: the network (processors, sockets, plugs) as an ipycytoscape widget with a details panel.

Every cytoscape node and edge is a widget model of its own, so the graph holds one element per
processor, socket and plug, never per call; calls appear as counts in socket labels (live.py).
Element ids are database ids, so refresh() and live updates touch the elements that exist.
"""

from __future__ import annotations

import html
import threading
import weakref
from dataclasses import dataclass, field

import ipywidgets as w
import redis
from ipycytoscape import CytoscapeWidget, Edge, Node
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from elasticcode.catalog import rights
from elasticcode.config import Settings, load
from elasticcode.db import model as m
from elasticcode.db.engine import session_scope
from elasticcode.errors import ElasticCodeError, NotFound
from elasticcode.runtime.coord import coordination_url

from .live import LiveStates, SocketState

STATE_COLOURS = {"queued": "#bdbdbd", "received": "#9ecae1", "running": "#fd8d3c", "finished": "#74c476",
                 "done": "#74c476", "failed": "#ef3b2c", "dead": "#252525"}

STYLE = [
    {"selector": "node", "style": {
        "label": "data(label)", "text-wrap": "wrap", "text-valign": "center", "text-halign": "center",
        "font-size": 10, "shape": "round-rectangle", "width": "data(w)", "height": "data(h)",
        "background-color": "#deebf7", "border-width": 1, "border-color": "#6baed6"}},
    {"selector": "node.processor", "style": {
        "text-valign": "top", "font-weight": "bold", "background-color": "#f7f7f7", "background-opacity": 0.6,
        "border-color": "#969696", "padding": "12px"}},
    {"selector": "node.processor.error", "style": {"border-color": STATE_COLOURS["failed"], "border-width": 2}},
    *({"selector": f"node.{state}", "style": {"background-color": colour}}
      for state, colour in STATE_COLOURS.items()),
    {"selector": "node.running", "style": {"border-width": 3, "border-color": "#d94801"}},
    {"selector": "edge", "style": {
        "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 2, "line-color": "#636363",
        "target-arrow-color": "#636363", "label": "data(label)", "font-size": 9, "text-background-color": "#fff",
        "text-background-opacity": 0.8}},
    {"selector": "edge.error", "style": {"line-style": "dashed", "line-color": "#d62728", "target-arrow-color": "#d62728"}},
]
LAYOUT = {"name": "dagre", "rankDir": "LR", "nodeSep": 25, "rankSep": 80}


def box(label: str, min_chars: int = 0) -> dict:
    """Node size from its label: cytoscape's `width: label` is deprecated, data-mapped sizes are not."""
    lines = label.split("\n")
    return {"w": 16 + 6.2 * max(min_chars, *(len(x) for x in lines)), "h": 12 + 13 * len(lines)}


@dataclass
class Topology:
    """Plain rows of what the graph shows, read in one short transaction."""

    processors: dict[str, dict] = field(default_factory=dict)
    sockets: dict[str, dict] = field(default_factory=dict)
    plugs: dict[str, dict] = field(default_factory=dict)


def read_topology(settings: Settings, flow: str | None = None) -> Topology:
    topo = Topology()
    with session_scope(settings.require_db()) as session:
        rights.require(session, "LS_SOCKETS")
        query = select(m.Processor).options(selectinload(m.Processor.sockets)).order_by(m.Processor.name)
        if flow:
            flow_id = session.execute(select(m.Flow.id).where(m.Flow.name == flow)).scalar()
            if flow_id is None:
                raise NotFound(f"flow {flow!r} does not exist: list processors with `flow ls processors`")
            query = query.where(m.Processor.flow_id == flow_id)
        for p in session.execute(query).scalars():
            topo.processors[p.id] = {"name": p.name, "status": p.status, "concurrency": p.concurrency}
            for s in sorted(p.sockets, key=lambda s: s.name):
                topo.sockets[s.id] = {"name": s.name, "processor": p.id, "status": s.status}
        ids = list(topo.sockets)
        plugs = session.execute(select(m.Plug).where(or_(m.Plug.source_id.in_(ids), m.Plug.target_id.in_(ids)))).scalars()
        for plug in plugs:
            if plug.source_id in topo.sockets and plug.target_id in topo.sockets:  # both ends shown
                topo.plugs[plug.id] = {"name": plug.name, "type": plug.type, "argument": plug.argument,
                                       "source": plug.source_id, "target": plug.target_id}
    return topo


def processor_element(pid: str, p: dict) -> tuple[dict, str]:
    label = f"{p['name']}\n{p['status']} · concurrency {p['concurrency']}"
    classes = "processor" + (" error" if p["status"] == "error" else "")
    return {"id": pid, "kind": "processor", "name": p["name"], "label": label, **box(label)}, classes


def socket_element(sid: str, s: dict, state: SocketState | None) -> tuple[dict, str]:
    label = s["name"] + (f"\n{state.line()}" if state else "")
    classes = "socket " + (state.css_class if state else ("failed" if s["status"] == "error" else ""))
    return ({"id": sid, "kind": "socket", "name": s["name"], "parent": s["processor"], "label": label,
             "tooltip": s["name"], **box(label, 18)}, classes.strip())


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


class FlowGraph(w.HBox):
    """The flow graph widget: cytoscape graph on the left, details of the clicked node on the right."""

    def __init__(self, settings: Settings, flow: str | None = None, calls_shown: int = 20):
        self.settings, self.flow, self.calls_shown = settings, flow, calls_shown
        # Full width of its own box: cytoscape fits the graph to its first size, so the 70% must
        # belong to the wrapper, or the graph is laid out for the whole row and clipped.
        self.cyto = CytoscapeWidget(layout=w.Layout(width="100%", height="520px"))
        self.cyto.set_style(STYLE)
        self.cyto.cytoscape_layout = LAYOUT
        self.cyto.on("node", "click", self.on_node_click)
        self.details = w.HTML("<i>click a socket or processor</i>")
        self.status = w.HTML()
        refresh = w.Button(description="refresh", icon="refresh", layout=w.Layout(width="100px"))
        refresh.on_click(lambda _: self.refresh())
        bar = w.HBox([refresh, self.status])
        panel = w.VBox([bar, self.details], layout=w.Layout(width="30%", max_height="520px", overflow="auto"))
        self._parts = [refresh, self.status, bar, self.details, panel]  # closed with the graph
        super().__init__([w.Box([self.cyto], layout=w.Layout(width="70%")), panel])
        if hasattr(self.comm, "on_close"):  # the front end closed the widget: end the thread too
            self.comm.on_close(lambda _msg: self.stop_live(0))
        self.topology = Topology()
        self.nodes: dict[str, Node] = {}
        self.edges: dict[str, Edge] = {}
        self.states: dict[str, SocketState] = {}  # socket name -> live counts
        self.live: LiveStates | None = None
        self.applied = 0  # batches applied to widgets (the test counts them)
        self._lock = threading.RLock()  # refresh (kernel thread) vs apply_states (live thread)
        self.refresh()

    # --- topology -----------------------------------------------------------------------------
    def refresh(self) -> FlowGraph:
        """Re-read the network: new elements are added, changed ones updated, deleted ones removed."""
        topo = read_topology(self.settings, self.flow)
        wanted_nodes = {pid: processor_element(pid, p) for pid, p in topo.processors.items()}
        wanted_nodes |= {sid: socket_element(sid, s, self.states.get(s["name"])) for sid, s in topo.sockets.items()}
        wanted_edges = {eid: plug_element(eid, p) for eid, p in topo.plugs.items()}
        graph = self.cyto.graph
        with self._lock:
            # Re-parenting a node needs remove + add (cytoscape ignores a changed `parent` in data).
            gone = {n for n, node in self.nodes.items()
                    if n not in wanted_nodes or node.data.get("parent") != wanted_nodes[n][0].get("parent")}
            for eid in [e for e, edge in self.edges.items() if e not in wanted_edges or self._moved(edge, wanted_edges[e][0])
                        or {edge.data["source"], edge.data["target"]} & gone]:
                graph.remove_edge(self.edges.pop(eid))
            for nid in sorted(gone, key=lambda n: self.nodes[n].data["kind"] == "processor"):  # children first
                graph.remove_node(self.nodes.pop(nid))
            new_nodes = []
            for nid, (data, classes) in wanted_nodes.items():  # processors come first: parents before children
                if nid in self.nodes:
                    self._set(self.nodes[nid], data, classes)
                else:
                    self.nodes[nid] = Node(data=data, classes=classes)
                    new_nodes.append(self.nodes[nid])
            graph.add_nodes(new_nodes)
            new_edges = []
            for eid, (data, classes) in wanted_edges.items():
                if eid in self.edges:
                    self._set(self.edges[eid], data, classes)
                else:
                    self.edges[eid] = Edge(data=data, classes=classes)
                    new_edges.append(self.edges[eid])
            graph.add_edges(new_edges, directed=True, multiple_edges=True)
            self.topology = topo
        return self

    @staticmethod
    def _moved(edge: Edge, data: dict) -> bool:
        old = edge.data
        return (old["source"], old["target"]) != (data["source"], data["target"])

    @staticmethod
    def _set(element, data: dict, classes: str) -> None:
        """One message per changed element (hold_sync), none for an unchanged one."""
        with element.hold_sync():
            if element.classes != classes:
                element.classes = classes
            if dict(element.data) != data:
                element.data = data

    def socket_ids(self) -> dict[str, str]:
        return {s["name"]: sid for sid, s in self.topology.sockets.items()}

    # --- live states --------------------------------------------------------------------------
    def apply_states(self, changed: dict[str, SocketState]) -> bool:
        """The batch step: the only place live states touch widgets (one update per changed socket)."""
        if self.comm is None:  # closed: tell the live thread to end
            return False
        with self._lock:
            self.applied += 1
            self.states.update(changed)
            ids = self.socket_ids()
            for name, state in changed.items():
                sid = ids.get(name)
                if sid in self.nodes:
                    self._set(self.nodes[sid], *socket_element(sid, self.topology.sockets[sid], state))
        return True

    def start_live(self, interval: float = 0.25) -> FlowGraph:
        """Follow call events; socket labels and colours change at most 1/interval times a second."""
        if self.live and self.live.running:
            return self
        ref = weakref.ref(self)  # the thread must not keep a closed, forgotten graph alive

        def apply(changed: dict[str, SocketState]) -> bool:
            graph = ref()
            return graph is not None and graph.apply_states(changed)

        self.live = LiveStates(coordination_url(self.settings.broker, self.settings.backend), apply, interval).start()
        self.status.value = "<small>live</small>"
        return self

    def stop_live(self, timeout: float = 5.0) -> bool:
        stopped = self.live.stop(timeout) if self.live else True
        if self.status.comm is not None:
            self.status.value = ""
        return stopped

    def close(self) -> None:
        self.stop_live()
        for element in [*self.edges.values(), *self.nodes.values()]:
            element.close()
        for part in [self.cyto.graph, self.cyto, *self._parts]:
            part.close()
        super().close()

    # --- details panel ------------------------------------------------------------------------
    def on_node_click(self, node: dict) -> None:
        """Click callback: ipycytoscape passes the node's JSON ({'data': {...}, ...})."""
        nid = (node.get("data") or node).get("id")
        try:
            if nid in self.topology.sockets:
                self.details.value = self.socket_details(self.topology.sockets[nid]["name"])
            elif nid in self.topology.processors:
                self.details.value = self.processor_details(nid)
        except ElasticCodeError as exc:  # a click must never raise into the kernel
            self.details.value = f"<p style='color:#c00'>{html.escape(str(exc))}</p>"

    def socket_details(self, name: str) -> str:
        # Newest first (history(limit=) would give the oldest); no count(*): it scans all calls of a socket.
        with session_scope(self.settings.require_db()) as session:
            rights.require(session, "LS_CALLS")
            calls = session.execute(select(m.Call).where(m.Call.name == name)
                                    .order_by(m.Call.created.desc()).limit(self.calls_shown)).scalars().all()
            rows = [call_row(c) for c in calls]
        state = self.states.get(name)
        head = f"<h4>{html.escape(name)}</h4>" + (f"<p>live: {html.escape(state.line())}</p>" if state else "")
        if not rows:
            return head + "<p><i>no calls recorded yet</i></p>"
        return f"{head}<p>latest {len(rows)} calls, newest first</p>{calls_table(rows)}"

    def processor_details(self, pid: str) -> str:
        with session_scope(self.settings.require_db()) as session:
            p = session.get(m.Processor, pid)
            if p is None:
                raise NotFound("that processor was deleted: press refresh")
            fields = {"status": p.status, "requested": p.requested_status, "message": p.status_message,
                      "concurrency": p.concurrency, "module": p.module, "repository": p.gitrepo,
                      "branch": p.branch, "commit": p.commit, "host": p.hostname}
        rows = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in fields.items() if v is not None)
        return f"<h4>{html.escape(p.name)}</h4><table class='ec-processor'>{rows}</table>"


def show_graph(settings: Settings | None = None, flow: str | None = None, live: bool = True) -> FlowGraph:
    """What `%flow graph [FLOW]` displays: the graph, following call events when Redis is reachable."""
    graph = FlowGraph(settings or load(), flow)
    if live:
        try:
            graph.start_live()
        except (ElasticCodeError, redis.RedisError, OSError) as exc:  # the graph is still useful without live states
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            graph.status.value = f"<small>live states off: {html.escape(reason)}</small>"
    return graph
