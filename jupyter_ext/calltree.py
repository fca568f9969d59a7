"""`%flow call ID --tree`: a call tree (from `catalog.calls.call_tree`) as a top-down cytoscape graph.

Each node is a widget model, so a big flow run is cut at `max_nodes`: nodes are taken breadth
first and the subtrees left out are summed into one "+N more" node per parent, the whole
drawing (summary nodes included) staying within `max_nodes`.
"""

from __future__ import annotations

from collections import deque

from ipycytoscape import CytoscapeWidget, Edge, Node

from .graph_elements import STATE_COLOURS

MAX_NODES = 300

STYLE = [
    {"selector": "node", "style": {
        "label": "data(label)", "text-wrap": "wrap", "font-size": 9, "shape": "round-rectangle",
        "width": "data(w)", "height": 30, "text-valign": "center", "background-color": "#deebf7",
        "border-width": 1, "border-color": "#6baed6"}},
    *({"selector": f"node.{state}", "style": {"background-color": colour}} for state, colour in STATE_COLOURS.items()),
    {"selector": "node.dead", "style": {"color": "#fff"}},
    {"selector": "node.more", "style": {"background-color": "#fff", "border-style": "dashed", "shape": "ellipse"}},
    {"selector": "edge", "style": {"curve-style": "bezier", "target-arrow-shape": "triangle", "width": 1.5,
                                   "line-color": "#969696", "target-arrow-color": "#969696"}},
]


def _subtree_sizes(tree: dict) -> dict[int, int]:
    """Node count under every subtree, keyed by id() of its dict (iterative: trees can be 1000 deep)."""
    order, stack = [], [tree]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.get("children") or ())
    sizes: dict[int, int] = {}
    for node in reversed(order):  # children before parents
        sizes[id(node)] = 1 + sum(sizes[id(c)] for c in node.get("children") or ())
    return sizes


def select_nodes(tree: dict, max_nodes: int = MAX_NODES) -> tuple[list[tuple[dict, str | None]], dict[str, int]]:
    """Breadth-first (call, parent id) pairs to draw, and per parent id the number of calls left out.

    A node is taken only if the drawing, counting one summary node per parent that still has
    children waiting, stays within max_nodes.
    """
    sizes = _subtree_sizes(tree)
    taken: list[tuple[dict, str | None]] = []
    queue: deque[tuple[dict, str]] = deque()
    waiting: dict[str, int] = {}  # parent id -> children in the queue

    def take(node: dict, parent: str | None) -> None:
        taken.append((node, parent))
        kids = node.get("children") or ()
        if kids:
            waiting[node["call"]["id"]] = len(kids)
            queue.extend((kid, node["call"]["id"]) for kid in kids)

    take(tree, None)
    while queue:
        node, parent = queue[0]
        # Summary nodes needed if we take this one: the parents still waiting after it.
        after = len(waiting) - (waiting[parent] == 1) + bool(node.get("children"))
        if len(taken) + 1 + after > max_nodes:
            break
        queue.popleft()
        waiting[parent] -= 1
        if not waiting[parent]:
            del waiting[parent]
        take(node, parent)
    left_out: dict[str, int] = {}
    for node, parent in queue:
        left_out[parent] = left_out.get(parent, 0) + sizes[id(node)]
    return taken, left_out


def _label(call: dict) -> str:
    name = str(call.get("name") or "?")
    return f"{name.rsplit('.', 1)[-1]}\n{str(call['id'])[:8]}"


def call_tree_widget(tree: dict, max_nodes: int = MAX_NODES) -> CytoscapeWidget:
    """The call tree, root on top, coloured by state; hover a node for its full socket name, state and error."""
    taken, left_out = select_nodes(tree, max_nodes)
    nodes, edges = [], []
    for node, parent in taken:
        call = node["call"]
        cid, label = str(call["id"]), _label(call)
        tooltip = "\n".join(f"{k}: {call[k]}" for k in ("name", "state", "duration", "worker", "error")
                            if call.get(k) is not None)
        nodes.append(Node(data={"id": cid, "label": label, "tooltip": tooltip,
                                "w": 16 + 6 * max(len(x) for x in label.split("\n"))},
                          classes=str(call.get("state") or "")))
        if parent:
            edges.append(Edge(data={"id": f"{parent}>{cid}", "source": parent, "target": cid}, classes="directed"))
    for parent, count in left_out.items():
        mid = f"more:{parent}"
        nodes.append(Node(data={"id": mid, "label": f"+{count} more", "w": 70, "tooltip": f"{count} calls not drawn"},
                          classes="more"))
        edges.append(Edge(data={"id": f"{parent}>{mid}", "source": parent, "target": mid}, classes="directed"))
    widget = CytoscapeWidget()
    widget.set_style(STYLE)
    widget.cytoscape_layout = {"name": "breadthfirst", "directed": True, "roots": [str(tree["call"]["id"])],
                               "spacingFactor": 1.1}
    widget.graph.add_nodes(nodes)
    widget.graph.add_edges(edges, directed=True)
    return widget
