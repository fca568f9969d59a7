"""The kinds of objects users add, list, update and delete, described once.

The CLI builds `flow add|update|ls|delete KIND` from these specs and the Python API uses the
same field names, so an option means the same thing everywhere. Flags follow the manual
(section 10 and the quickstart). The manual uses `-c` both for concurrency (quickstart) and for
commit (help text): here `-c` is concurrency and the commit is `--commit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..db import model as m


@dataclass(frozen=True)
class Field:
    attr: str  # value key (and model attribute unless the kind resolves it)
    flags: tuple[str, ...]  # CLI flags, e.g. ("-n", "--name")
    help: str
    type: Any = str  # str, int, bool, or a tuple of choices
    required: bool = False  # required by `add`
    default: Any = None  # default on `add`


@dataclass(frozen=True)
class Kind:
    name: str  # singular, as typed: processor
    plural: str  # processors
    model: type
    fields: tuple[Field, ...]
    columns: tuple[str, ...]  # shown by `ls`
    right: str  # suffix of ADD_/UPDATE_/DELETE_/LS_ rights
    extra_columns: dict[str, str] = field(default_factory=dict)


NAME = Field("name", ("-n", "--name"), "Name of the object", required=True)
DESCRIPTION = Field("description", ("--description",), "Free text description")

QUEUE = Kind(
    "queue", "queues", m.Queue,
    (
        NAME,
        Field("qtype", ("-t", "--type"), "Exchange type", m.QUEUE_TYPES, default="direct"),
        Field("durable", ("--durable/--transient",), "Survive broker restarts", bool, default=True),
        Field("message_ttl", ("--message-ttl",), "Message time to live (ms)", int),
        Field("max_length", ("--max-length",), "Maximum number of messages", int),
        Field("expires", ("--expires",), "Delete the queue after this many idle ms", int),
        DESCRIPTION,
    ),
    ("name", "qtype", "durable", "message_ttl", "owner", "lastupdated"),
    "QUEUE",
)

PROCESSOR = Kind(
    "processor", "processors", m.Processor,
    (
        NAME,
        Field("module", ("-m", "--module"), "Python module (e.g. some.module.path)", required=True),
        Field("gitrepo", ("-g", "--gitrepo"), "Git repository URL or path", required=True),
        Field("hostname", ("-h", "--hostname"), "Target node hostname (any node when omitted)"),
        Field("concurrency", ("-c", "--concurrency", "-cs", "--cpus"),
              "Most busy worker processes per node (the node's CPUs are shared by busy processes)", int, default=1),
        Field("min_concurrency", ("--min",), "Worker processes kept per node even when idle (0: started on demand)",
              int, default=0),
        Field("branch", ("-br", "--branch"), "Git branch to check out"),
        Field("commit", ("--commit",), "Git commit to pin (the manual's -c)"),
        Field("gittag", ("--tag",), "Git tag to check out"),
        Field("modulepath", ("-mp", "--modulepath"), "Repository-relative folder holding the module"),
        Field("requirements", ("-rq", "--requirements"), "Extra requirements (pip specifiers, space separated)"),
        Field("retries", ("-r", "--retries"), "Retries for a failing call", int),
        Field("timelimit", ("--timelimit",), "Hard time limit per call (seconds)", int),
        Field("beat", ("-b", "--beat/--no-beat"), "Enable the beat scheduler", bool, default=False),
        Field("requested_status", ("-rs", "--requested-status"), "Requested status",
              ("ready", "running", "stopped", "paused"), default="running"),
        Field("endpoint", ("-e", "--endpoint"), "API endpoint path"),
        Field("hasapi", ("-a", "--api/--no-api"), "Has an API endpoint", bool, default=False),
        DESCRIPTION,
    ),
    ("name", "module", "gitrepo", "commit", "hostname", "min_concurrency", "concurrency", "status", "status_message",
     "owner"),
    "PROCESSOR",
)

SOCKET = Kind(
    "socket", "sockets", m.Socket,
    (
        NAME,
        Field("processor", ("-pn", "--processor"), "Name of the processor that hosts the function", required=True),
        Field("queue", ("-q", "--queue"), "Queue in front of the socket (created if missing)", required=True),
        Field("function", ("-t", "--task"), "Function (task) name in the processor's module", required=True),
        Field("interval", ("-i", "--interval"), "Run every N seconds (beat)", int),
        Field("cron", ("--cron",), "Cron schedule (beat)"),
        DESCRIPTION,
    ),
    ("name", "processor", "function", "queue", "status", "owner"),
    "SOCKET",
)

PLUG = Kind(
    "plug", "plugs", m.Plug,
    (
        NAME,
        Field("source", ("-s", "--source"), "Source socket name", required=True),
        Field("target", ("-t", "--target"), "Target socket name", required=True),
        Field("queue", ("-q", "--queue"), "Queue for the forwarded call (default: the target's)"),
        Field("argument", ("-a", "--argument"), "Bind the value to this named argument of the target"),
        Field("type", ("--type",), "Fire on the source's RESULT or on its ERROR", m.PLUG_TYPES, default="RESULT"),
        Field("max_queued", ("--max-queued",), "Back pressure: the source waits while the target's queue holds this "
              "many calls", int),
        Field("max_bytes", ("--max-bytes",), "Back pressure: the source waits while the target's queue holds this "
              "many bytes", int),
        DESCRIPTION,
    ),
    ("name", "source", "target", "argument", "type", "max_queued", "max_bytes", "status", "status_message", "owner"),
    "PLUG",
)

NODE = Kind(
    "node", "nodes", m.Node,
    (
        NAME,
        Field("hostname", ("-h", "--hostname"), "Hostname (default: the name)"),
        Field("cpus", ("--cpus",), "Number of CPUs", int),
        Field("scheduler", ("-s", "--scheduler"), "Scheduler that places work on this node"),
        DESCRIPTION,
    ),
    ("name", "hostname", "status", "cpus", "cpuload", "freemem", "owner", "lastupdated"),
    "NODE",
)

AGENT = Kind(
    "agent", "agents", m.Agent,
    (
        NAME,
        Field("node", ("-nd", "--node"), "Node the agent runs on (default: the name)"),
        Field("hostname", ("-h", "--hostname"), "Hostname (default: the node's)"),
        Field("cpus", ("--cpus",), "Number of CPUs", int),
        DESCRIPTION,
    ),
    ("name", "hostname", "cpus", "pid", "status", "heartbeat", "owner"),
    "AGENT",
)

SCHEDULER = Kind(
    "scheduler", "schedulers", m.Scheduler,
    (
        NAME,
        Field("strategy", ("--strategy",), "Placement strategy", m.STRATEGIES, default="BALANCED"),
        DESCRIPTION,
    ),
    ("name", "strategy", "status", "owner", "lastupdated"),
    "SCHEDULER",
)

WORKER = Kind(
    "worker", "workers", m.Worker, (NAME,),
    ("name", "hostname", "concurrency", "process", "status", "commit", "lastupdated"),
    "WORKER",
)

ROLE = Kind("role", "roles", m.Role, (NAME, DESCRIPTION), ("name", "owner", "lastupdated"), "ROLE")

USER = Kind(
    "user", "users", m.User,
    (
        NAME,
        Field("email", ("-e", "--email"), "Email address"),
        DESCRIPTION,
    ),
    ("name", "email", "owner", "lastupdated"),
    "USER",
)

PRIVILEGE = Kind(
    "privilege", "privileges", m.Privilege,
    (
        Field("name", ("-n", "--name"), "Right to grant (e.g. ADD_PROCESSOR)", required=True),
        Field("user", ("-u", "--user"), "Grant to this user"),
        Field("role", ("-r", "--role"), "Grant to this role"),
    ),
    ("name", "right"),
    "PRIVILEGE",
)

KINDS: dict[str, Kind] = {k.name: k for k in (QUEUE, PROCESSOR, SOCKET, PLUG, NODE, AGENT, SCHEDULER, WORKER, ROLE, USER, PRIVILEGE)}
BY_PLURAL: dict[str, Kind] = {k.plural: k for k in KINDS.values()}
# Kinds that `flow add` creates directly (workers are made by agents).
ADDABLE = tuple(k for k in KINDS if k != "worker")
