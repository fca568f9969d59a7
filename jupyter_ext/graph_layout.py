"""Where the flow graph puts its nodes: processors as boxes in a grid shaped like the widget.

Automatic layouts stack unconnected processors in one tall column, which cytoscape then shrinks
to fit (labels of 5-7 px at five processors). Here each processor is a box of its sockets, the
boxes fill a grid whose aspect ratio is the widget's, and processors that feed others come first
(plugs run left to right). The positions are cytoscape's "preset" layout; the widget fits them
with a zoom kept near 1, so labels keep their size in screen pixels.
"""

from __future__ import annotations

import math

FONT_PX = 13  # label font size (model units; shown at zoom 0.8-1.25: 10-16 px)
CHAR_PX = 0.62 * FONT_PX  # average glyph width of the default sans-serif
LINE_PX = 1.3 * FONT_PX
PADDING = 12  # inside a processor box (cytoscape's compound padding)
GAP = 26  # between boxes, and between sockets in a box
SOCKETS_PER_COLUMN = 4
MIN_SOCKET_CHARS = 18
BOX = (1000.0, 500.0)  # the drawing's target size in px: the widget is the notebook's width and 520 px high
HEIGHTS = (520, 720, 920)  # the widget grows (in these steps) before its labels would shrink below ~12 px
BOX_MARGIN = HEIGHTS[0] - BOX[1]  # of a widget's height, what the fit's padding takes
WANTED_ZOOM = 0.9


def label_size(label: str, min_chars: int = 0) -> tuple[float, float]:
    lines = label.split("\n")
    return 16 + CHAR_PX * max(min_chars, *(len(x) for x in lines)), 12 + LINE_PX * len(lines)


def ranks(processors: list[str], plugs: list[tuple[str, str]]) -> dict[str, int]:
    """Each processor's depth in the plug graph between processors (sources 0); cycles are cut."""
    rank = {p: 0 for p in processors}
    for _ in range(len(processors)):  # longest path by relaxation; bounded for cycles
        changed = False
        for source, target in plugs:
            if source != target and source in rank and target in rank and rank[target] < rank[source] + 1 <= len(processors):
                rank[target] = rank[source] + 1
                changed = True
        if not changed:
            break
    return rank


class Cell:
    """One processor's box: its sockets in columns of SOCKETS_PER_COLUMN, its label above."""

    def __init__(self, pid: str, label: str, sockets: list[tuple[str, str]]):
        self.pid, self.sockets = pid, sockets
        self.label_w, self.label_h = label_size(label)
        self.sizes = [label_size(text, MIN_SOCKET_CHARS) for _, text in sockets]
        columns = max(1, math.ceil(len(sockets) / SOCKETS_PER_COLUMN))
        self.columns = [self.sizes[i::columns] for i in range(columns)] if sockets else []
        inner_w = sum(max(w for w, _ in col) for col in self.columns) + GAP * (len(self.columns) - 1) if sockets else 0
        inner_h = max((sum(h for _, h in col) + GAP * (len(col) - 1) for col in self.columns), default=0)
        self.width = max(inner_w + 2 * PADDING, self.label_w)
        self.height = self.label_h + inner_h + 2 * PADDING

    def place(self, x: float, y: float) -> dict[str, tuple[float, float]]:
        """Positions (centres) of the sockets, or of the box itself when it has none; (x, y) is its top left."""
        if not self.sockets:
            return {self.pid: (x + self.width / 2, y + self.label_h + PADDING)}
        out: dict[str, tuple[float, float]] = {}
        n = len(self.columns)
        left = x + (self.width - (sum(max(w for w, _ in col) for col in self.columns) + GAP * (n - 1))) / 2
        for c, col in enumerate(self.columns):
            col_w = max(w for w, _ in col)
            top = y + self.label_h + PADDING
            for r, (_, h) in enumerate(col):
                sid = self.sockets[r * n + c][0]
                out[sid] = (left + col_w / 2, top + h / 2)
                top += h + GAP
            left += col_w + GAP
        return out


def grid(cells: list[Cell], columns: int) -> tuple[float, float, list[tuple[float, float]]]:
    """Top-left corners of the cells in a grid of `columns`, and the grid's width and height."""
    rows = [cells[i:i + columns] for i in range(0, len(cells), columns)]
    col_w = [max(row[c].width for row in rows if c < len(row)) for c in range(columns)]
    corners, y = [], 0.0
    for row in rows:
        x = 0.0
        for c, cell in enumerate(row):
            corners.append((x + (col_w[c] - cell.width) / 2, y))
            x += col_w[c] + GAP
        y += max(cell.height for cell in row) + GAP
    return sum(col_w) + GAP * (columns - 1), y - GAP, corners


def positions(processors: dict[str, str], sockets: dict[str, tuple[str, str]], plugs: list[tuple[str, str]],
              box: tuple[float, float] = BOX) -> tuple[dict[str, tuple[float, float]], float]:
    """Node positions and the zoom that fits them in `box`.

    `processors`: id -> label, `sockets`: id -> (processor id, label), `plugs`: (source socket id,
    target socket id) pairs."""
    if not processors:
        return {}, 1.0
    owner = {sid: pid for sid, (pid, _) in sockets.items()}
    rank = ranks(list(processors), [(owner[s], owner[t]) for s, t in plugs if s in owner and t in owner])
    order = sorted(processors, key=lambda pid: (rank[pid], list(processors).index(pid)))
    cells = [Cell(pid, processors[pid], [(sid, text) for sid, (p, text) in sockets.items() if p == pid]) for pid in order]
    best = None
    for columns in range(1, len(cells) + 1):
        width, height, corners = grid(cells, columns)
        zoom = min(box[0] / width, box[1] / height)
        if best is None or zoom > best[0] + 1e-9:
            best = (zoom, corners)
    zoom, corners = best
    placed: dict[str, tuple[float, float]] = {}
    for cell, (x, y) in zip(cells, corners, strict=True):
        placed |= cell.place(x, y)
    return placed, zoom


def widget_height(processors: dict[str, str], sockets: dict[str, tuple[str, str]], plugs: list[tuple[str, str]],
                  width: float = BOX[0]) -> tuple[int, dict[str, tuple[float, float]]]:
    """The smallest of HEIGHTS at which the drawing keeps WANTED_ZOOM (else the largest), and the positions for it."""
    for height in HEIGHTS:
        placed, zoom = positions(processors, sockets, plugs, (width, height - BOX_MARGIN))
        if zoom >= WANTED_ZOOM:
            break
    return height, placed

