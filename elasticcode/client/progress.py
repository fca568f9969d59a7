"""Progress while waiting: an ipywidgets bar in a notebook, one rewritten line in a terminal."""

from __future__ import annotations

import sys


class TextProgress:
    def __init__(self, handle):
        self.handle = handle

    def update(self) -> None:
        done, total = self.handle.counts()
        sys.stderr.write(f"\r{self.handle.id[:8]}: {done}/{max(total, done)} calls finished")
        sys.stderr.flush()

    def done(self, error: str | None = None) -> None:
        self.update()
        sys.stderr.write(f" - failed: {error}\n" if error else " - done\n")
        sys.stderr.flush()


class WidgetProgress:
    def __init__(self, handle):
        import ipywidgets as widgets
        from IPython.display import display

        self.handle = handle
        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="running", bar_style="info")
        self.label = widgets.Label(value=f"{handle.id[:8]}")
        display(widgets.HBox([self.bar, self.label]))

    def update(self) -> None:
        done, total = self.handle.counts()
        self.bar.max = max(total, done, 1)
        self.bar.value = done
        self.label.value = f"{done}/{self.bar.max} calls finished"

    def done(self, error: str | None = None) -> None:
        self.update()
        self.bar.value = self.bar.max
        self.bar.bar_style, self.bar.description = ("danger", "failed") if error else ("success", "done")
        if error:
            self.label.value = error


def _in_kernel() -> bool:
    """Inside a Jupyter kernel (not merely with ipykernel imported somewhere in the process)."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_for(handle):
    if _in_kernel():
        try:
            return WidgetProgress(handle)
        except ImportError:
            pass
    return TextProgress(handle)
