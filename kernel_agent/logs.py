"""Log forwarding: new worker output goes out on `ec.<processor>.log` (for `flow listen -c log`).

Read from the workers' log files, so logging costs the workers nothing on the hot path.
"""

from __future__ import annotations

import json

from elasticcode.runtime import naming

from .context import AgentContext
from .steps import Step


def log_message(processor: str, line: str) -> str:
    return json.dumps({"channel": "log", "room": processor, "line": line})


class LogForwarding(Step):
    def __init__(self, ctx: AgentContext):
        self.ctx = ctx

    def tick(self, now: float) -> None:
        self.forward()

    def forward(self) -> None:
        for worker in self.ctx.workers:
            lines = worker.new_log_lines()
            if lines:
                pipe = self.ctx.redis.pipeline(transaction=False)
                channel = naming.channel(worker.processor, "log")
                for line in lines:
                    pipe.publish(channel, log_message(worker.processor, line))
                pipe.execute()
