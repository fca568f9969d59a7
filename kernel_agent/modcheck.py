"""Checking a processor's module: does it import, and does it have the sockets' functions?

It runs in the processor's own venv, sandboxed like a worker: importing runs processor code,
which the agent itself must never do.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .venvs import CodeError, run

if TYPE_CHECKING:
    from .sandbox import Sandbox

MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
FUNCTION = re.compile(r"^[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ModuleReport:
    problems: dict[str, str]  # function -> what is wrong with it (missing, not callable)
    params: dict[str, dict]  # function -> {"names": [parameter names], "varkw": takes **kwargs}

    def lacks(self, function: str, argument: str) -> bool:
        """Whether a call of `function` with keyword `argument` would fail with a TypeError."""
        sig = self.params.get(function)
        return sig is not None and not sig["varkw"] and argument not in sig["names"]


def check_module(python: Path, import_path: Path, module: str, functions: list[str], sandbox: Sandbox,
                 timeout: float = 60) -> ModuleReport:
    """Import the module in the processor's own venv (the agent must not import processor code,
    nor its dependencies, itself) and report on its functions."""
    if not MODULE.match(module or ""):
        raise CodeError(f"module {module!r} is not a dotted Python module name: fix --module")
    bad = [f for f in functions if not FUNCTION.match(f or "")]
    if bad:
        raise CodeError(f"function name {bad[0]!r} is not a Python identifier: fix the socket's function")
    # Importing runs processor code: as the worker would, sandboxed, never as the agent.
    done = run([str(python), "-I", "-c", _CHECK, str(import_path), module, json.dumps(functions)],
               timeout=timeout, what=f"importing module {module!r}", cwd=import_path,
               env=sandbox.env(python.parent, import_path, Path(tempfile.gettempdir())),
               fix="move slow work out of import time, into the functions", **sandbox.popen_kwargs())
    line = next((ln for ln in reversed(done.stdout.splitlines()) if ln.startswith(_MARK)), None)
    if line is None:
        tail = [ln for ln in (done.stderr or "").splitlines() if ln.strip()]
        raise CodeError(f"module {module!r} could not be checked: {(tail or ['interpreter died'])[-1].strip()}")
    result = json.loads(line[len(_MARK):])
    if "error" in result:
        raise CodeError(f"module {module!r} failed to import: {result['error']} "
                        "(fix the module name, --modulepath or the requirements)")
    return ModuleReport(result["problems"], result.get("params", {}))


_MARK = "@@elasticcode-check@@"
# Runs in the processor's venv; the module's own prints go to stderr so stdout stays ours.
_CHECK = f"""
import importlib, inspect, json, sys
path, module, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, path)
out, sys.stdout = sys.stdout, sys.stderr
try:
    mod = importlib.import_module(module)
except BaseException as exc:
    sys.stdout = out
    print({_MARK!r} + json.dumps({{"error": (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:400]}}))
    sys.exit(0)
sys.stdout = out
problems, params = {{}}, {{}}
for name in names:
    if not hasattr(mod, name):
        problems[name] = "not found in module " + module
    elif not callable(getattr(mod, name)):
        problems[name] = "is not callable in module " + module + " (it is " + type(getattr(mod, name)).__name__ + ")"
    else:
        try:
            ps = inspect.signature(getattr(mod, name)).parameters.values()
        except (TypeError, ValueError):
            continue  # a builtin without a signature: nothing to check
        params[name] = {{"names": [p.name for p in ps if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)],
                         "varkw": any(p.kind == p.VAR_KEYWORD for p in ps)}}
print({_MARK!r} + json.dumps({{"problems": problems, "params": params}}))
"""
