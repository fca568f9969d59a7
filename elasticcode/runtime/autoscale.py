"""Autoscaling: Celery's own autoscaler, steered by the agent (kernel_agent/scaling.py).

The agent shares the node's CPUs among its processors by lowering and raising each worker's
autoscale maximum (the `autoscale` remote control command); Celery grows the pool when calls
are reserved and shrinks it after the cool-down. Three details of Celery are taken care of here,
and `ec_pool` reports the pool to the agent.
"""

from __future__ import annotations

import time

from celery.worker import autoscale, state
from celery.worker.consumer import Consumer
from celery.worker.control import inspect_command

SCALE_CHECK = 1.0  # seconds between the autoscaler's own checks (Celery uses its keep-alive for both)


class Autoscaler(autoscale.Autoscaler):
    """Celery's autoscaler, with a cool-down apart from how often it checks, and one that starts a
    process at once when its maximum is raised while a call already waits in the worker (Celery
    grows only when the next message arrives or at the next periodic check)."""

    cooldown = 10.0  # set from the spec

    def __init__(self, *args, **kwargs):
        kwargs["keepalive"] = SCALE_CHECK
        super().__init__(*args, **kwargs)

    def update(self, max=None, min=None):  # noqa: A002 - Celery's names
        result = super().update(max, min)
        self.maybe_scale()
        return result

    def scale_down(self, n):
        last = max((t for t in (self._last_scale_up, self._last_task_received) if t is not None), default=None)
        if last is not None and time.monotonic() - last > self.cooldown:
            return self._shrink(n)
        return None


class ScaledConsumer(Consumer):
    """With autoscaling, the prefetch count follows the autoscale maximum, never the pool's size.

    Celery computes the "maximum" prefetch from the number of pool processes: with a minimum of 0
    that is 0, which the broker reads as *unlimited* (per-consumer QoS after a reconnect), and
    otherwise the prefetch after a reconnect stays at the pool's size at that moment, so the
    autoscaler (which grows only up to the calls it has reserved) could never grow again. With
    late acks and a multiplier of 1, the prefetch count is also what bounds the calls running at
    once: lowering the maximum takes effect as soon as the running calls end, even when a busy
    pool process cannot be stopped yet."""

    def _scale_max(self, index: int = 0) -> int | None:
        scaler = getattr(self.controller, "autoscaler", None)
        return None if scaler is None else scaler.max_concurrency + index

    @property
    def max_prefetch_count(self):
        top = self._scale_max()
        return super().max_prefetch_count if top is None else max(top, 1) * self.prefetch_multiplier

    def _update_prefetch_count(self, index=0):
        # Called by Autoscaler.update before it stores the new maximum (old maximum + index).
        top = self._scale_max(index)
        if top is None:
            return super()._update_prefetch_count(index)
        target = max(top, 1) * self.prefetch_multiplier
        self.initial_prefetch_count = target
        if getattr(self, "qos", None) is not None:
            change = target - self.qos.value
            if change > 0:
                self.qos.increment_eventually(change)
            elif change < 0:
                self.qos.decrement_eventually(-change)
        return None


@inspect_command()
def ec_pool(state_, **_):
    """The agent's view of this worker's pool: autoscale range, processes, reserved and running calls."""
    scaler = state_.consumer.controller.autoscaler
    info = scaler.info() if scaler is not None else {}
    qos = getattr(state_.consumer, "qos", None)
    return {"max": info.get("max"), "min": info.get("min"), "processes": state_.consumer.pool.num_processes,
            "reserved": len(state.reserved_requests), "active": len(state.active_requests),
            "prefetch": qos.value if qos is not None else None}
