"""The model database: every table of the network, its history and its users."""

from ..base import Base, new_id
from .content import File, Setting, Version
from .network import (
    PLUG_TYPES,
    QUEUE_TYPES,
    STRATEGIES,
    Agent,
    Argument,
    Deployment,
    Flow,
    Node,
    Plug,
    Processor,
    Queue,
    Scheduler,
    Socket,
    Task,
    Worker,
)
from .provenance import Call, Event, Log
from .security import RIGHTS, Privilege, Role, User, role_privileges, user_privileges, user_roles

# Tables whose rows belong to one user (row-level security on `owner`); the security tables
# are readable by every ElasticCode user and written only by role administrators.
OWNED_TABLES = (
    "scheduler", "node", "agent", "flow", "processor", "deployment", "worker", "queue", "task",
    "argument", "socket", "plug", "call", "event", "log", "settings", "file", "versions",
)
SECURITY_TABLES = ("users", "role", "privilege", "user_privileges", "user_roles", "role_privileges")

__all__ = [
    "Base", "new_id", "File", "Setting", "Version", "Agent", "Argument", "Deployment", "Flow",
    "Node", "Plug", "Processor", "Queue", "Scheduler", "Socket", "Task", "Worker", "Call", "Event",
    "Log", "Privilege", "Role", "User", "role_privileges", "user_privileges", "user_roles",
    "RIGHTS", "PLUG_TYPES", "QUEUE_TYPES", "STRATEGIES", "OWNED_TABLES", "SECURITY_TABLES",
]
