"""Property-based fuzzing of argument parsing: `flow ...` and the `%flow` line magic.

Properties:

- `flow ARGS` run in-process through its console entry (`elasticcode.cli.main`, as a shell would
  run it) never prints a Python traceback, never hangs (each example is bounded in time), exits
  0, 1 or 2, and on failure says so in at most one `Error:` line that is the last line it
  prints (the message is one line). ARGS mix real command paths and options, walked from the
  click tree, with arbitrary text: unicode, control characters, undecodable bytes (surrogate
  escapes, as Python gives them for argv), option-looking strings, huge numbers, empty strings,
  quotes; no NUL, which no OS puts in an argv. Not `--debug`, which asks for the traceback.
- The `%flow` line (NULs included) is turned into argv (IPython's `{var}` expansion, then
  `magics._split`) or refused with a one-line UsageError, never another exception; the
  notebook-only commands' parsers (`graph`, `call`, `%%flow processor`) do the same.

The environment is configured but every service is unreachable: the database, admin, service,
broker and backend URLs point at 127.0.0.1:1 (closed: refused at once), ELASTICCODE_HOME is a
temporary folder, the working directory is another one, and standard input is empty (prompts
such as `flow --config`, `flow login` or `flow user password` abort at once; `--password-stdin`
reads an empty line). Nothing here touches real services or starts anything: the commands in
STUBBED below have their options parsed as usual but a stub instead of their action.

Found by it and fixed: a `--db` URL SQLAlchemy cannot parse (`postgresql://[::1`) ended in
"unexpected ValueError"; user text with a line break or other control character (an unknown
option, a path, a `{var}` holding a newline in `%flow`) split the one-line error; a NUL from a
`{var}` reached `flow` through `%flow` (a raw ValueError). Found and not fixed here: see
test_a_libpq_style_database_url_is_refused_in_one_line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import string
import time
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from elasticcode.cli import flow as flow_group
from elasticcode.cli import main as flow_main

CLOSED = "127.0.0.1:1"
EXAMPLE_SECONDS = 15.0  # one example: argument parsing plus at most one refused connection
# ELASTICCODE_FUZZ_EXAMPLES=5000 for a longer hunt; 150 keeps the file at a few seconds.
FUZZ = settings(max_examples=int(os.environ.get("ELASTICCODE_FUZZ_EXAMPLES", "150")), deadline=None,  # our own time bound
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Commands whose *action* must not run here; their options are still parsed (fuzzed), then a stub
# stands in for the callback:
STUBBED = {
    ("up",): "starts PostgreSQL, Redis and an agent",
    ("down",): "stops the stack and kills the processes named in the home's pidfiles",
    ("agent", "start"): "runs an agent in the foreground until Ctrl-C",
    ("worker", "start"): "builds a virtual environment and exec()s a worker in place of this process",
    ("scheduler", "start"): "runs until Ctrl-C (or --duration)",
    ("listen",): "waits for messages until Ctrl-C (or --count/--timeout)",
}


# --- the command tree -----------------------------------------------------------------------

def _walk(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, (*path, name))


TREE = dict(_walk(flow_group, ()))
PATHS = sorted(TREE)
NAMES = sorted({name for path in PATHS for name in path})


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


# `--debug` is left out on purpose: it asks for the traceback.
ALL_OPTS = sorted({o for c in TREE.values() for p in _options(c) for o in (*p.opts, *p.secondary_opts)} - {"--debug"})
assert "--name" in ALL_OPTS and "--password-stdin" in ALL_OPTS and set(STUBBED) <= set(PATHS)


# --- strategies -----------------------------------------------------------------------------

# Any code point but NUL (controls, RTL marks, astral), plus the surrogate escapes Python makes of
# argv bytes that are not UTF-8: a real shell can pass b"\xff" to `flow`, but never a NUL (argv
# strings end at one). The `%flow` line, a Python string, gets NULs too (`line_chars`).
chars = st.one_of(
    st.characters(codec=None, exclude_categories=["Cs"], exclude_characters="\0"),
    st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
    st.sampled_from("\n\r\t\x1b'\"\\ =-:/@%{}[]$`;|&*?~#"),
)
line_chars = st.one_of(chars, st.just("\0"))
junk = st.one_of(
    st.text(chars, max_size=20),
    st.sampled_from(["", " ", "-", "--", "---", "-=", "--=", "=", "'", '"', "''", '"unclosed', "\n", "-\n",
                     "--help", "--version", "--json", "-h", "-p", "-n-n", "-ppp", "--no-", "--name=", "--name==x",
                     "nan", "inf", "-inf", "1e309", "-0", "0x10", "1_000", "٣", "１２", "postgresql+psycopg2://", "redis://",
                     "postgresql://[::1", "postgresql://u:p@h:99999999/d", "redis://:@/", "amqp://%zz", "/", ".", "..",
                     "/nonexistent/x.yaml", "/etc/passwd", "-i", "~", "$HOME", "{x}", "%s%n", "\u202e", "\ufeff"]),
    st.integers().map(str),
    st.integers(min_value=2**63 - 2, max_value=2**70).map(str),
    st.sampled_from(ALL_OPTS).flatmap(lambda o: st.text(chars, max_size=8).map(lambda v: f"{o}={v}")),
)


plausible = st.sampled_from(["q1", "proc1", "pyfi.queue1", "pyfi.processors.sample", "do_something", "joe", "ALL", "direct",
                             "https://github.com/acme/repo", "/tmp/repo", "main", "3f2a", "1", "0", "-1",
                             "00000000-0000-0000-0000-000000000000", "['some data']", '{"a": 1}', "a.yaml"])


def value_for(param: click.Parameter) -> st.SearchStrategy[str]:
    """A value of the parameter's own type most of the time, anything at all otherwise."""
    kind = param.type
    if isinstance(kind, click.Choice):
        typed = st.sampled_from([str(c) for c in kind.choices])
    elif isinstance(kind, click.types.IntParamType):
        typed = st.one_of(st.integers(-3, 100), st.integers()).map(str)
    elif isinstance(kind, click.types.FloatParamType):
        typed = st.one_of(st.floats(), st.integers()).map(str)
    elif param.name in ("db", "broker", "backend"):
        # (not `postgresql://` without a driver: see test_a_libpq_style_database_url_is_refused_in_one_line)
        typed = st.sampled_from([f"postgresql+psycopg2://u@{CLOSED}/x", f"postgres://{CLOSED}/x", f"redis://{CLOSED}/0",
                                 f"amqp://g@{CLOSED}//", "sqlite:///x.db", f"postgresql+psycopg2://u@[::1]:{CLOSED[-1]}/x"])
    else:
        typed = st.one_of(plausible, st.text(chars, max_size=16))
    return st.one_of(typed, typed, typed, junk)


@st.composite
def argvs(draw) -> list[str]:
    """Sometimes top-level options, a real command path, the command's own options (required ones
    mostly present) with values of their types or anything, then up to two stray tokens anywhere:
    junk, other commands' options or names."""
    args: list[str] = []
    if draw(st.integers(0, 3)) == 0:
        args += draw(options_of(flow_group, required_too=False))
    path = draw(st.sampled_from(PATHS))
    args += list(path)
    args += draw(options_of(TREE[path], required_too=draw(st.integers(0, 4)) > 0))
    stray = st.one_of(junk, st.sampled_from(ALL_OPTS), st.sampled_from(NAMES))
    for where, token in draw(st.lists(st.tuples(st.integers(0, 40), stray), max_size=2)):
        args.insert(where % (len(args) + 1), token)
    return [a for a in args if a != "--debug"]


@st.composite
def options_of(draw, command: click.Command, required_too: bool) -> list[str]:
    params = [p for p in command.params if not (isinstance(p, click.Option) and "--debug" in p.opts)]
    chosen = draw(st.lists(st.sampled_from(params), unique_by=lambda p: p.name, max_size=4)) if params else []
    if required_too:
        chosen += [p for p in params if p.required and p not in chosen]
    args: list[str] = []
    for param in chosen:
        if isinstance(param, click.Argument):
            args.append(draw(value_for(param)))
            continue
        opt = draw(st.sampled_from([*param.opts, *param.secondary_opts]))
        if param.is_flag and not getattr(param, "_flag_needs_value", False):
            args.append(opt)
        elif opt.startswith("--") and draw(st.booleans()):
            args.append(f"{opt}={draw(value_for(param))}")
        else:
            args += [opt, draw(value_for(param))]
    return args


# --- running flow in-process ----------------------------------------------------------------

class Hung(BaseException):
    """Raised in the main thread by SIGALRM (a BaseException: `flow`'s own handlers do not catch it)."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """SIGALRM after `seconds`, then pytest-timeout's own alarm (if any) is put back as it was."""

    def ring(signum, frame):  # noqa: ARG001
        raise Hung(f"no answer within {seconds}s")

    previous = signal.signal(signal.SIGALRM, ring)
    left, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if left:
            signal.setitimer(signal.ITIMER_REAL, max(left - (time.monotonic() - started), 0.01))


def run_flow(args: list[str]) -> tuple[int, str, str]:
    runner = CliRunner()
    with runner.isolation(input="") as (out, err, *_):
        code: object = 0
        with time_bound(EXAMPLE_SECONDS):
            try:
                flow_main(list(args))
            except SystemExit as exc:
                code = exc.code
        return code, out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace")


def check_one_line_contract(args: list[str], code: object, out: str, err: str) -> None:
    shown = f"args={args!r}\nexit={code!r}\nstdout={out[-800:]!r}\nstderr={err[-800:]!r}"
    assert "Traceback (most recent call last)" not in out + err, shown
    assert code in (0, 1, 2, None), shown
    errors = [line for line in (out + err).splitlines() if line.startswith("Error:")]
    assert len(errors) <= 1, shown
    if code:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines, shown
        if code == 2 and not errors:  # a group given no command: click shows its help (NoArgsIsHelpError)
            assert lines[0].startswith("Usage: flow") and "Commands:" in lines, shown
            return
        assert lines[-1] == "Aborted." or (errors and lines[-1] == errors[0]), shown  # nothing after the Error line
        assert not lines[-1].startswith("Error: unexpected "), shown  # what `flow` says of a bug ("report it")


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """Every URL at a closed local port, a private home and working directory, excluded actions stubbed."""
    from elasticcode.client import api as client_api
    from elasticcode.db.engine import dispose_all

    home, cwd = tmp_path_factory.mktemp("fuzzhome"), tmp_path_factory.mktemp("fuzzcwd")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("ELASTICCODE_INI", "ELASTICCODE_PASSWORD"):
            mp.delenv(var, raising=False)
        for var in ("ELASTICCODE_DB", "ELASTICCODE_ADMIN_DB", "ELASTICCODE_SERVICE_DB"):
            mp.setenv(var, f"postgresql+psycopg2://nobody@{CLOSED}/nowhere")
        for var in ("ELASTICCODE_BROKER", "ELASTICCODE_BACKEND"):
            mp.setenv(var, f"redis://{CLOSED}/0")
        mp.setenv("ELASTICCODE_HOME", str(home))
        mp.setenv("PGCONNECT_TIMEOUT", "3")
        mp.chdir(cwd)
        reached: list[tuple[str, ...]] = []
        for path in STUBBED:
            mp.setattr(TREE[path], "callback", lambda *a, _path=path, **k: reached.append(_path))
        client_api.reset_settings()
        yield reached
        dispose_all()
        client_api.reset_settings()


def test_the_offline_environment_fails_fast_with_one_line(offline):
    started = time.monotonic()
    code, out, err = run_flow(["ls", "queues"])
    assert code == 1 and err.startswith("Error: cannot reach the model database") and err.count("\n") == 1, (out, err)
    assert time.monotonic() - started < 5
    assert run_flow(["up"])[0] == 0 and offline[-1] == ("up",)  # the stub, not the stack


@FUZZ
@given(args=argvs())
@example(args=["--db", "postgresql://[::1", "ls", "queues"])  # was: unexpected ValueError from SQLAlchemy's URL parser
@example(args=["ls", "queues", "--bogus\nnext line"])  # click quoted the option, newline and all, in its error
@example(args=["add", "queue", "-n", "\udcff"])  # an argv byte that is not UTF-8
def test_flow_argument_parsing_never_crashes(offline, args):
    code, out, err = run_flow(args)
    check_one_line_contract(args, code, out, err)
    last = (err.strip().splitlines() or [""])[-1]
    event(f"exit {code}: {last.split(':')[1].strip()[:24] if last.startswith('Error:') else last[:16]}")  # --hypothesis-show-statistics


@pytest.mark.parametrize("where", ["option", "environment"])
def test_a_libpq_style_database_url_works_like_the_psycopg2_one(offline, monkeypatch, where):
    url = f"postgresql://nobody@{CLOSED}/nowhere"
    if where == "environment":
        monkeypatch.setenv("ELASTICCODE_DB", url)
    args = ["-d", url, "ls", "queues"] if where == "option" else ["ls", "queues"]
    code, out, err = run_flow(args)
    check_one_line_contract(args, code, out, err)
    assert "cannot reach the model database" in err


# --- %flow ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shell():
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    return start_ipython() or get_ipython()  # one test shell per process: another module may have started it


magic_line = st.one_of(
    st.text(line_chars, max_size=60),
    st.lists(st.one_of(st.sampled_from(NAMES + ALL_OPTS + ["graph", "call", "builder", "{x}", "{y}", "{x!r}", "{nope}",
                                                           "{x.__class__}", "{0}", "{", "}", "$x", "$$x"]), junk), max_size=8)
    .map(" ".join),
)
namespace_value = st.one_of(st.text(line_chars, max_size=12), st.integers(), st.none(), st.lists(st.integers(), max_size=3))


def _one_line(exc: UsageError) -> None:
    message = str(exc)
    assert message and len(message.splitlines()) == 1, repr(message)  # \n, \r, \x85, \u2028... all count


@FUZZ
@given(line=magic_line, x=namespace_value, y=namespace_value)
@example(line="ls {x}", x="a\n'", y=None)  # a variable with a newline and an open quote: the error quoted the line
@example(line="ls 'unclosed\rtext", x=None, y=None)
@example(line="add queue -n \"{x}\"", x='"', y=None)
@example(line="compose build {x}", x="a\0b", y=None)  # was: a raw ValueError (embedded null byte) out of `%flow`
def test_magic_line_becomes_argv_or_one_line_usage_error(shell, line, x, y):
    from jupyter_ext import magics

    shell.user_ns.update(x=x, y=y)
    expanded = shell.var_expand(line)  # what IPython hands the magic (`{var}` and `$var` expansion)
    assert isinstance(expanded, str)
    for text in (line, expanded):
        with time_bound(EXAMPLE_SECONDS):
            try:
                argv = magics._split(text)
            except UsageError as exc:
                _one_line(exc)
                continue
        assert isinstance(argv, list) and all(isinstance(a, str) and "\0" not in a for a in argv)  # what a shell could pass


@FUZZ
@given(args=st.lists(st.one_of(st.sampled_from(["--flow", "--static", "-t", "--tree", "-g", "--graph", "-c", "--concurrency",
                                                 "--requirements", "--queue", "--remote", "--help", "x"]), junk), max_size=6),
       which=st.sampled_from(["graph", "call", "processor"]))
def test_notebook_only_commands_parse_or_refuse_in_one_line(args, which):
    """`%flow graph`, `%flow call` and `%%flow processor` parse with their own click commands: only parsed here
    (the actions draw widgets or publish code)."""
    from jupyter_ext import magics

    command = {"graph": magics._graph_command, "call": magics._call_command, "processor": magics._processor_command}[which]
    runner = CliRunner()
    with runner.isolation(input=""), time_bound(EXAMPLE_SECONDS):
        try:
            magics._guard(lambda: command.make_context(f"%flow {which}", list(args)))
        except UsageError as exc:
            _one_line(exc)


def test_strategies_reach_every_command_and_option():
    """The tree walk sees what `flow --help` offers (so new commands are fuzzed without editing this file)."""
    assert {("add", "queue"), ("ls", "calls"), ("task", "run"), ("login",), ("compose", "build")} <= set(PATHS)
    assert all(c in string.printable for c in "".join(ALL_OPTS))
