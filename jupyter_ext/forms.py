"""`%flow builder`: a small form to add a queue, processor, socket or plug.

The fields come from elasticcode.catalog.kinds, the same specs the `flow add` options are made
from, so the form and the CLI never disagree.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from elasticcode import catalog
from elasticcode.catalog.kinds import KINDS, Field
from elasticcode.config import Settings
from elasticcode.db.engine import session_scope
from elasticcode.errors import ElasticCodeError

FORM_KINDS = ("processor", "socket", "plug", "queue")


def _input(f: Field) -> widgets.Widget:
    label = f.attr.replace("_", " ") + (" *" if f.required else "")
    style = {"description_width": "140px"}
    layout = widgets.Layout(width="480px")
    if f.type is bool:
        return widgets.Checkbox(value=bool(f.default), description=label, style=style, layout=layout)
    if isinstance(f.type, tuple):
        return widgets.Dropdown(options=list(f.type), value=f.default or f.type[0], description=label, style=style, layout=layout)
    if f.type is int:
        return widgets.IntText(value=f.default if f.default is not None else 0, description=label, style=style, layout=layout)
    return widgets.Text(value="", placeholder=f.help, description=label, style=style, layout=layout)


class Builder(widgets.VBox):
    """Pick a kind, fill the fields, press Add: the result (or the one-line error) shows below."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.kind = widgets.ToggleButtons(options=FORM_KINDS, value="processor")
        self.fields = widgets.VBox()
        self.add = widgets.Button(description="Add", button_style="primary", icon="plus")
        self.message = widgets.HTML()
        self.inputs: dict[str, tuple[Field, widgets.Widget]] = {}
        super().__init__([self.kind, self.fields, self.add, self.message])
        self.kind.observe(lambda _: self._show_fields(), names="value")
        self.add.on_click(lambda _: self.submit())
        self._show_fields()

    def _show_fields(self) -> None:
        spec = KINDS[self.kind.value]
        self.inputs = {f.attr: (f, _input(f)) for f in spec.fields}
        self.fields.children = [w for _, w in self.inputs.values()]
        self.message.value = ""

    def values(self) -> dict[str, Any]:
        out = {}
        for attr, (f, widget) in self.inputs.items():
            value = widget.value
            if f.type is int and value == 0 and f.default is None:
                value = None
            if isinstance(value, str):
                value = value.strip() or None
            out[attr] = value
        return out

    def submit(self) -> bool:
        kind = self.kind.value
        try:
            with session_scope(self.settings.require_db()) as session:
                obj = catalog.add(session, kind, self.values(), self.settings.repositories)
                name = obj.name
        except ElasticCodeError as exc:
            self.message.value = f"<span style='color:#b00020'>Error: {exc}</span>"
            return False
        self.message.value = f"<span style='color:#1b5e20'>{kind} <b>{name}</b> added</span>"
        return True


def builder(settings: Settings) -> Builder:
    return Builder(settings)
