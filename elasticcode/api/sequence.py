"""Each call's events in the order of its life, whatever order they reach the live channel in."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..runtime.events import DEAD, FAILURE, POSTRUN, PRERUN, QUEUED, RECEIVED

HOLD = 1.0  # seconds an event waits for the ones that come before it in its call's life
MAX_CALLS = 50_000  # calls whose place in their life is remembered (the oldest are forgotten)
STEP = {QUEUED: 0, RECEIVED: 1, PRERUN: 2, POSTRUN: 3, FAILURE: 3, DEAD: 3}


@dataclass
class CallSteps:
    next: int = 0  # the step this call's next event should be
    held: dict[int, list[dict]] = field(default_factory=dict)
    since: float = 0.0  # when the oldest held event arrived


class Sequencer:
    """Events of one call in the order of its life (queued, received, prerun, then postrun or failure).

    They reach the stream from different processes (the client, the worker's main process, its
    pool process), so the recorders may store and publish a call's `prerun` before its `received`.
    An event that comes before its turn is held (at most HOLD seconds) until the ones before it
    arrive; one whose predecessors never come (a client that connected mid-call) goes out after
    HOLD, in order. Redeliveries (a step again, after a later one) go out at once."""

    def __init__(self) -> None:
        self.calls: OrderedDict[str, CallSteps] = OrderedDict()
        self.holding: dict[str, CallSteps] = {}  # the calls with held events (what `expire` looks at)

    def push(self, message: dict, now: float) -> list[dict]:
        step, call = STEP.get(message.get("state")), message.get("call")
        if step is None or not call:
            return [message]
        steps = self.calls.get(call)
        if steps is None:
            steps = self.calls[call] = CallSteps()
            if len(self.calls) > MAX_CALLS:
                oldest_call, oldest = self.calls.popitem(last=False)
                if self.holding.pop(oldest_call, None) is not None:
                    return [*self._release(oldest), message]
        if step < steps.next:
            return [message]
        if step > steps.next:
            if not steps.held:
                steps.since = now
                self.holding[call] = steps
            steps.held.setdefault(step, []).append(message)
            return []
        out = [message]
        steps.next = step + 1
        while steps.next in steps.held:
            out += steps.held.pop(steps.next)
            steps.next += 1
        if not steps.held:
            self.holding.pop(call, None)
        return out

    def expire(self, now: float) -> list[dict]:
        out: list[dict] = []
        for call, steps in list(self.holding.items()):
            if now - steps.since >= HOLD:
                out += self._release(steps)
                del self.holding[call]
        return out

    @staticmethod
    def _release(steps: CallSteps) -> list[dict]:
        out = []
        for step in sorted(steps.held):
            out += steps.held.pop(step)
            steps.next = step + 1
        return out
