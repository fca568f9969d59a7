"""Progress while waiting: an ipywidgets bar in a notebook, one rewritten line in a terminal."""

from __future__ import annotations

import sys


class TextProgress:
    def __init__(self, handle):
        self.handle, self.why = handle, None

    def update(self) -> None:
        done, total = self.handle.counts()
        sys.stderr.write(f"\r{self.handle.id[:8]}: {done}/{max(total, done)} calls finished")
        sys.stderr.flush()

    def note(self, why: str | None) -> None:
        if why and why != self.why:  # once per reason, not every look
            sys.stderr.write(f"\r{self.handle.id[:8]}: waiting: {why}\n")
            sys.stderr.flush()
        self.why = why

    def done(self, error: str | None = None, waiting: bool = False) -> None:
        self.update()
        sys.stderr.write(f" - {error}\n" if waiting else f" - failed: {error}\n" if error else " - done\n")
        sys.stderr.flush()


class WidgetProgress:
    def __init__(self, handle):
        import ipywidgets as widgets
        from IPython.display import display

        self.handle, self.why = handle, None
        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="running", bar_style="info")
        self.label = widgets.Label(value=f"{handle.id[:8]}")
        display(widgets.HBox([self.bar, self.label]))

    def update(self) -> None:
        done, total = self.handle.counts()
        self.bar.max = max(total, done, 1)
        self.bar.value = done
        self.label.value = f"{done}/{self.bar.max} calls finished" + (f" - waiting: {self.why}" if self.why else "")

    def note(self, why: str | None) -> None:
        """Say why nothing moves (a processor not running), or stop saying it."""
        self.why = why
        self.bar.bar_style = "warning" if why else "info"
        self.update()

    def done(self, error: str | None = None, waiting: bool = False) -> None:
        """Green when done, red when failed; amber (not red) when the wait ended but the work goes on."""
        self.update()
        if waiting:
            self.bar.bar_style, self.bar.description = "warning", "waiting"
        else:
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


# -- one bar for a batch of handles (elasticcode.progress) -----------------------------------


def _eta(done: int, total: int, elapsed: float) -> str:
    if not done or done >= total:
        return ""
    return f", about {elapsed / done * (total - done):.0f}s left"


def batch_text(finished: int, failed: int, total: int, elapsed: float) -> str:
    return f"{finished}/{total} finished" + (f", {failed} failed" if failed else "") + _eta(finished + failed, total, elapsed)


class TextBatch:
    def __init__(self, total: int):
        self.total = total

    def update(self, finished: int, failed: int, elapsed: float) -> None:
        sys.stderr.write("\r" + batch_text(finished, failed, self.total, elapsed))
        sys.stderr.flush()

    def close(self, note: str = "") -> None:
        sys.stderr.write((f" - {note}" if note else "") + "\n")
        sys.stderr.flush()


class WidgetBatch:
    def __init__(self, total: int):
        import ipywidgets as widgets
        from IPython.display import display

        self.total, self.failed = total, 0
        self.bar = widgets.IntProgress(value=0, min=0, max=max(total, 1), description="running", bar_style="info")
        self.label = widgets.Label(value=f"0/{total} finished")
        display(widgets.HBox([self.bar, self.label]))

    def update(self, finished: int, failed: int, elapsed: float) -> None:
        self.bar.value = finished + failed
        self.label.value = batch_text(finished, failed, self.total, elapsed)
        if failed:
            self.bar.bar_style = "warning"
        self.failed = failed

    def close(self, note: str = "") -> None:
        if self.bar.value >= self.total:
            self.bar.bar_style, self.bar.description = ("warning", "done") if self.failed else ("success", "done")
        else:
            self.bar.bar_style, self.bar.description = "danger", "stopped"
        if note:
            self.label.value += f" - {note}"


def batch_bar(total: int):
    if _in_kernel():
        try:
            return WidgetBatch(total)
        except ImportError:
            pass
    return TextBatch(total)
