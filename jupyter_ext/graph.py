"""`%flow graph`: the network (processors, sockets, plugs) as an ipycytoscape widget with a details panel.

Every cytoscape node and edge is a widget model of its own, so the graph holds one element per
processor, socket and plug, never per call; calls appear as counts in socket labels (live.py).
Sockets and plugs are the routes (`catalog.routes.build_routes`, the same table the agents
publish); processors are read for their boxes. Element ids are stable (processor ids from the
database, sockets and plugs by owner and name), so refresh() and live updates touch the elements
that exist.
"""

from __future__ import annotations

import html
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime

import ipywidgets as w
import redis
from ipycytoscape import CytoscapeWidget, Edge, Node
from sqlalchemy import select

from elasticcode.catalog import rights
from elasticcode.catalog.routes import build_routes
from elasticcode.config import Settings, load
from elasticcode.db import model as m
from elasticcode.db.engine import session_scope
from elasticcode.errors import ElasticCodeError, NotFound
from elasticcode.runtime.connections import coordination_url
from elasticcode.runtime.routes import RouteTable

from . import notebook
from .graph_data import active_processors, processor_statuses, seed_counts
from .graph_elements import (
    LAYOUT,
    MAX_ZOOM,
    MIN_ZOOM,
    STYLE,
    call_row,
    calls_table,
    plug_element,
    plug_id,
    processes_line,
    processor_element,
    socket_element,
    socket_id,
)
from .graph_layout import widget_height
from .live import LiveStates, SocketState


@dataclass
class Topology:
    """Plain rows of what the graph shows, read in one short transaction."""

    processors: dict[str, dict] = field(default_factory=dict)
    sockets: dict[str, dict] = field(default_factory=dict)
    plugs: dict[str, dict] = field(default_factory=dict)


def read_topology(settings: Settings, flow: str | None = None, only: set[str] | None = None) -> Topology:
    """Processors (all, one flow's, or those named in `only`) with their sockets and the plugs
    whose both ends are shown."""
    with session_scope(settings.require_db()) as session:
        rights.require(session, "LS_SOCKETS")
        query = select(m.Processor).order_by(m.Processor.name)
        if flow:
            flow_id = session.execute(select(m.Flow.id).where(m.Flow.name == flow)).scalar()
            if flow_id is None:
                raise NotFound(f"flow {flow!r} does not exist: list processors with `flow ls processors`")
            query = query.where(m.Processor.flow_id == flow_id)
        if only is not None:
            query = query.where(m.Processor.name.in_(sorted(only)))
        processors = {p.id: {"name": p.name, "owner": p.owner, "status": p.status, "concurrency": p.concurrency}
                      for p in session.execute(query).scalars()}
        routes = build_routes(session)
    return topology(processors, routes)


def topology(processors: dict[str, dict], routes: RouteTable) -> Topology:
    """The rows the graph shows: `processors` (id -> row, in display order) and the routes of their sockets."""
    topo = Topology(processors=processors)
    order = {pid: i for i, pid in enumerate(processors)}
    by_owner = {(p["owner"], p["name"]): pid for pid, p in processors.items()}
    by_name: dict[str, list[str]] = {}
    for pid, p in processors.items():
        by_name.setdefault(p["name"], []).append(pid)
    shown = []
    for route in routes:
        pid = by_owner.get((route.owner, route.processor))
        if pid is None and len(by_name.get(route.processor, ())) == 1:  # a socket on another owner's processor
            pid = by_name[route.processor][0]
        if pid is not None:  # its processor is shown
            shown.append((order[pid], route.socket, pid, route))
    shown.sort(key=lambda x: x[:2])  # processors in their order, sockets by name
    for _, _, pid, route in shown:
        topo.sockets[socket_id(route.owner, route.socket)] = {
            "name": route.socket, "owner": route.owner, "processor": pid, "status": route.socket_status}
    for _, _, _, route in shown:
        source = socket_id(route.owner, route.socket)
        for plug in route.plugs:
            target = socket_id(plug.target_owner, plug.target)
            if target in topo.sockets:  # both ends shown
                topo.plugs[plug_id(route.owner, route.socket, plug.name)] = {
                    "name": plug.name, "type": plug.type, "argument": plug.argument, "source": source, "target": target}
    return topo


SCOPES = ("all", "notebook")


class FlowGraph(w.VBox):
    """The flow graph widget: the cytoscape graph over the whole width, details of the clicked node below.

    `scope="notebook"` shows the processors this kernel published or added and those with calls
    in the last hour (the rest are counted in the status line); "all" shows every processor."""

    def __init__(self, settings: Settings, flow: str | None = None, calls_shown: int = 20, scope: str = "all"):
        if scope not in SCOPES:
            raise ElasticCodeError(f"graph scope {scope!r} is not one of {', '.join(SCOPES)}")
        self.settings, self.flow, self.calls_shown, self.scope = settings, flow, calls_shown, scope
        self.cyto = CytoscapeWidget(layout=w.Layout(width="100%", height="520px"))
        self.cyto.set_style(STYLE)
        self.cyto.min_zoom, self.cyto.max_zoom = MIN_ZOOM, MAX_ZOOM  # labels stay 10-16 px on screen
        self.cyto.cytoscape_layout = LAYOUT
        self.cyto.on("node", "click", self.on_node_click)
        self.details = w.HTML("<i>click a socket or processor</i>")
        self.status = w.HTML()
        refresh = w.Button(description="refresh", icon="refresh", layout=w.Layout(width="100px"))
        refresh.on_click(lambda _: self.refresh())
        self.scope_note = w.HTML()
        self.period = w.HTML()
        bar = w.HBox([refresh, self.status, self.period, self.scope_note])
        panel = w.VBox([bar, self.details], layout=w.Layout(width="100%", max_height="320px", overflow="auto"))
        self._parts = [refresh, self.status, self.period, self.scope_note, bar, self.details, panel]  # closed with the graph
        super().__init__([w.Box([self.cyto], layout=w.Layout(width="100%")), panel])
        if hasattr(self.comm, "on_close"):  # the front end closed the widget: end the thread too
            self.comm.on_close(lambda _msg: self.stop_live(0))
        self.topology = Topology()
        self.nodes: dict[str, Node] = {}
        self.edges: dict[str, Edge] = {}
        self.states: dict[str, SocketState] = {}  # socket name -> live counts
        self.live: LiveStates | None = None
        self.processes: dict[str, str] = {}  # processor id -> its processes per node (published figures)
        self._figures: threading.Thread | None = None
        self.applied = 0  # batches applied to widgets (the test counts them)
        self.counted_since: datetime | None = None  # socket counts include calls from then on (history, then live)
        self._lock = threading.RLock()  # refresh (kernel thread) vs apply_states (live thread)
        self.refresh()

    # --- topology -----------------------------------------------------------------------------
    def shown_processors(self) -> set[str] | None:
        """The names the notebook scope shows (None: all)."""
        if self.scope == "all" or self.flow:
            return None
        return set(notebook.PROCESSORS) | active_processors(self.settings)

    def refresh(self) -> FlowGraph:
        """Re-read the network: new elements are added, changed ones updated, deleted ones removed."""
        only = self.shown_processors()
        topo = read_topology(self.settings, self.flow, only)
        if only is not None:
            hidden = len(read_topology(self.settings, self.flow).processors) - len(topo.processors)
            self.scope_note.value = (f"<small>&nbsp;{hidden} other processor{'s' if hidden != 1 else ''} "
                                     "(not of this notebook, no calls in the last hour): <code>%flow graph --all</code>"
                                     "</small>" if hidden else "")
        wanted_nodes = {pid: processor_element(pid, {**p, "processes": self.processes.get(pid)})
                        for pid, p in topo.processors.items()}
        wanted_nodes |= {sid: socket_element(sid, s, self.states.get(s["name"])) for sid, s in topo.sockets.items()}
        wanted_edges = {eid: plug_element(eid, p) for eid, p in topo.plugs.items()}
        height, placed = widget_height(
            {pid: data["label"] for pid, (data, _) in wanted_nodes.items() if pid in topo.processors},
            {sid: (data["parent"], data["label"]) for sid, (data, _) in wanted_nodes.items() if sid in topo.sockets},
            [(p["source"], p["target"]) for p in topo.plugs.values()])
        if self.cyto.layout.height != f"{height}px":  # a bigger network gets a taller box, not smaller labels
            self.cyto.layout.height = f"{height}px"
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
                where = {"x": round(placed[nid][0], 1), "y": round(placed[nid][1], 1)} if nid in placed else {}
                if nid in self.nodes:
                    self._set(self.nodes[nid], data, classes)
                    if where and dict(self.nodes[nid].position) != where:
                        self.nodes[nid].position = where
                else:
                    self.nodes[nid] = Node(data=data, classes=classes, position=where)
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

        def seed(tally) -> None:
            graph = ref()
            if graph is not None:
                first = seed_counts(graph.settings, tally, [s["name"] for s in graph.topology.sockets.values()])
                graph.counted_since = first or datetime.now().astimezone()  # no calls yet: from now on

        url = coordination_url(self.settings.broker, self.settings.backend)
        self.live = LiveStates(url, apply, interval, seed=seed).start()
        self._figures = threading.Thread(target=_follow_processes, args=(ref, url), name="ec-graph-figures", daemon=True)
        self._figures.start()
        self.status.value = "<small>live</small>"
        if self.counted_since is not None:
            self.period.value = f"<small>&nbsp;· calls counted since {_when(self.counted_since)}</small>"
        return self

    def apply_statuses(self, statuses: dict[str, str]) -> bool:
        """Processor statuses as the agents write them (a stopped processor reads `stopped` within seconds)."""
        if self.comm is None:
            return False
        with self._lock:
            for pid, status in statuses.items():
                p = self.topology.processors.get(pid)
                if p is not None and p["status"] != status:
                    p["status"] = status
                    if pid in self.nodes:
                        self._set(self.nodes[pid], *processor_element(pid, {**p, "processes": self.processes.get(pid)}))
        return True

    def apply_processes(self, processes: dict[str, str]) -> bool:
        """Processor labels with their processes per node; only changed ones are sent."""
        if self.comm is None:
            return False
        with self._lock:
            changed = {pid for pid in set(processes) | set(self.processes) if processes.get(pid) != self.processes.get(pid)}
            self.processes = processes
            for pid in changed:
                if pid in self.nodes and pid in self.topology.processors:
                    self._set(self.nodes[pid], *processor_element(pid, {**self.topology.processors[pid],
                                                                        "processes": processes.get(pid)}))
        return True

    def stop_live(self, timeout: float = 5.0) -> bool:
        stopped = self.live.stop(timeout) if self.live else True
        if self.status.comm is not None:
            self.status.value = ""
        return stopped

    def close(self) -> None:
        if not hasattr(self, "nodes"):  # refused in __init__ (a bad scope): nothing was built
            return
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


FIGURES_EVERY = 1.0  # seconds: agents publish their figures once a second


STATUSES_EVERY = 2  # figures: processor statuses are re-read every second turn


def _follow_processes(ref: weakref.ref, url: str) -> None:
    """The graph's processes per node, from the published figures, and its processors' statuses,
    while its live states run."""
    from elasticcode.runtime import metrics
    from elasticcode.runtime.connections import redis_client

    client = redis_client(url)
    turn = 0
    while True:
        graph = ref()
        if graph is None or graph.live is None or not graph.live.running:
            return
        try:
            processes = processes_line(metrics.latest(client))
        except redis.RedisError:
            processes = None  # Redis away: keep the last figures
        if processes is not None and not graph.apply_processes(processes):
            return
        turn += 1
        if turn % STATUSES_EVERY == 0:
            try:
                statuses = processor_statuses(graph.settings, list(graph.topology.processors))
            except Exception:  # noqa: BLE001 - the database away: keep the last statuses
                statuses = {}
            if not graph.apply_statuses(statuses):
                return
        del graph
        time.sleep(FIGURES_EVERY)


REFIT_AFTER = (0.5, 1.5, 3.0)  # seconds after the cell returns


def _refit_once_shown(graph: FlowGraph) -> None:
    """Fit the drawing again once the page has shown the widget at its final size: ipycytoscape lays
    out as soon as it renders, before the output area has its width and before every node view
    exists, and a fit made then stays (too small, or clamped at the smallest zoom)."""
    ref = weakref.ref(graph)

    def refit() -> None:
        for delay in REFIT_AFTER:
            time.sleep(delay)
            target = ref()
            if target is None or target.cyto.comm is None:
                return
            try:
                target.cyto.relayout()
            except Exception:  # noqa: BLE001 - a closed comm: nothing to fit
                return
            del target

    threading.Thread(target=refit, name="ec-graph-fit", daemon=True).start()


def _when(moment: datetime) -> str:
    local = moment.astimezone()
    return local.strftime("%H:%M") if local.date() == datetime.now().astimezone().date() else local.strftime("%a %d %b %H:%M")


def show_graph(settings: Settings | None = None, flow: str | None = None, live: bool = True,
               scope: str = "all") -> FlowGraph:
    """What `%flow graph [--flow NAME] [--all]` displays: the graph, following call events when Redis is reachable."""
    graph = FlowGraph(settings or load(), flow, scope=scope)
    _refit_once_shown(graph)
    if live:
        try:
            graph.start_live()
        except (ElasticCodeError, redis.RedisError, OSError) as exc:  # the graph is still useful without live states
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            graph.status.value = f"<small>live states off: {html.escape(reason)}</small>"
    return graph
