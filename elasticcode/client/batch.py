"""Many handles at once, as Dask users know it: `progress`, `as_completed`, `gather`.

    handles = [square.delay(i) for i in range(40)]
    elasticcode.progress(handles)            # one bar: finished and failed counts, time left
    for h in elasticcode.as_completed(handles): ...
    results = elasticcode.gather(handles)     # in order; errors="raise" | "skip" | "return"
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import ElasticCodeError
from .handles import Handle

ERRORS = ("raise", "skip", "return")


def _handles(handles: Iterable[Handle]) -> list[Handle]:
    items = list(handles)
    for h in items:
        if not isinstance(h, Handle):
            raise ElasticCodeError(f"{h!r} is not a handle: pass what .delay() or a workflow call returns")
    return items


def as_completed(handles: Iterable[Handle], timeout: float | None = None) -> Iterator[Handle]:
    """Yield each handle once it is done (failed ones too: their `.get()` raises), first done first."""
    pending = _handles(handles)
    total = len(pending)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.005
    while pending:
        done = [h for h in pending if h.ready()]
        if done:
            pending = [h for h in pending if h not in done]
            yield from done
            pause = 0.005
            continue
        if deadline is not None and time.monotonic() + pause > deadline:
            raise ElasticCodeError(f"{len(pending)} of {total} calls are not done after {timeout:g}s: "
                                   "they stay queued or running; wait again or cancel them")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def gather(handles: Iterable[Handle], errors: str = "raise", timeout: float | None = None) -> list[Any]:
    """The results in the order of `handles`. A failed call raises its error (errors="raise"), is
    left out (errors="skip") or stands as its exception in the list (errors="return")."""
    if errors not in ERRORS:
        raise ElasticCodeError(f"errors={errors!r} is not one of {', '.join(ERRORS)}")
    items = _handles(handles)
    for h in as_completed(items, timeout):
        if errors == "raise" and h.failed():
            h.get(timeout=0)  # raises the call's one-line error
    results: list[Any] = []
    for h in items:
        try:
            results.append(h.get(timeout=0))
        except Exception as exc:  # noqa: BLE001 - kept or skipped as asked
            if errors == "raise":
                raise
            if errors == "return":
                results.append(exc)
    return results


def progress(handles: Iterable[Handle], timeout: float | None = None) -> None:
    """One bar for a batch until every handle is done: finished and failed counts, time left.
    Interrupting the cell stops the bar, not the calls."""
    from .progress import batch_bar

    items = _handles(handles)
    bar, started = batch_bar(len(items)), time.monotonic()
    finished = failed = 0
    last = 0.0
    note = ""
    try:
        for h in as_completed(items, timeout):
            if h.failed():
                failed += 1
            else:
                finished += 1
            if time.monotonic() - last > 0.1 or finished + failed == len(items):  # a few redraws a second
                bar.update(finished, failed, time.monotonic() - started)
                last = time.monotonic()
    except KeyboardInterrupt:
        note = "interrupted; the calls go on"
        raise
    except ElasticCodeError as exc:
        note = str(exc)
        raise
    finally:
        bar.update(finished, failed, time.monotonic() - started)
        bar.close(note)
