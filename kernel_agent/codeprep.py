"""A processor's code made ready to run: prepared from git, its functions checked, its WorkerSpec built.

Public, so `flow worker start` prepares a processor exactly as the agent does.
"""

from __future__ import annotations

import json
import logging

from elasticcode.db import model as m
from elasticcode.runtime import naming
from elasticcode.runtime.workerspec import SocketSpec, WorkerSpec

from .code import CodeCache, CodeSpec, PreparedCode
from .modcheck import ModuleReport

log = logging.getLogger("elasticcode.agent")


def code_spec(proc: m.Processor) -> CodeSpec:
    return CodeSpec(gitrepo=proc.gitrepo, branch=proc.branch, commit=proc.commit, tag=proc.gittag,
                    requirements=proc.requirements, modulepath=proc.modulepath, owner=proc.owner)


def worker_spec(proc: m.Processor, prepared: PreparedCode, sockets: list[m.Socket], broker: str,
                backend: str | None, node: str, steered: bool = False, call_key: str | None = None) -> WorkerSpec:
    """What the processor's worker runs: its module at the prepared commit, serving `sockets`, with
    a pool between the processor's minimum and maximum. `steered`: the agent's scaling step shares
    the node's CPUs, so the worker starts at its minimum and waits for its share."""
    low = min(proc.min_concurrency or 0, proc.concurrency)
    return WorkerSpec(
        processor=proc.name, owner=proc.owner, module=proc.module, import_path=str(prepared.import_path),
        commit=prepared.commit, concurrency=proc.concurrency, min_concurrency=low,
        start_concurrency=low if steered else None, broker=broker, backend=backend, node=node, call_key=call_key,
        sockets=tuple(SocketSpec(name=s.name, function=s.task.function, task=naming.task_name(s.name),
                                 queue=naming.broker_queue(s.queue.name, proc.name)) for s in sockets),
    )


class CodePreparer:
    """Prepares processors' code, remembering what it prepared and checked so a reconcile is cheap."""

    def __init__(self, cache: CodeCache):
        self.cache = cache
        self._prepared: dict[str, tuple[str, PreparedCode]] = {}  # processor id -> (code key, prepared)
        self._checked: dict[tuple, ModuleReport] = {}

    def prepare(self, proc: m.Processor) -> PreparedCode:
        """The processor's checkout and venv; prepared again only when its code settings changed."""
        key = json.dumps([proc.gitrepo, proc.branch, proc.commit, proc.gittag, proc.requirements, proc.modulepath,
                          str(proc.lastupdated)])
        cached = self._prepared.get(proc.id)
        if cached and cached[0] == key:
            return cached[1]
        prepared = self.cache.prepare(code_spec(proc), progress=lambda msg: log.info("%s: %s", proc.name, msg))
        self._prepared[proc.id] = (key, prepared)
        return prepared

    def check(self, prepared: PreparedCode, module: str, functions: list[str]) -> ModuleReport:
        """Which functions the module lacks, and their parameters; cached, since it starts a python
        process in the venv."""
        key = (prepared.commit, str(prepared.import_path), str(prepared.python), module, tuple(functions))
        if key not in self._checked:
            self._checked[key] = self.cache.inspect_module(prepared, module, functions)
        return self._checked[key]
