"""Secrets handling: SCRAM verifiers, URL redaction, libpq password files, safe role names.

Passwords never travel or rest in clear: a role's password is turned into a SCRAM-SHA-256
verifier here, so the server (and its statement log) only ever sees the verifier. URLs are
redacted before they are printed. Generated credentials for the embedded stack live in a libpq
password file readable by the owner only (the standard mechanism libpq reads by itself).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SCRAM_ITERATIONS = 4096
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def scram_verifier(password: str, *, iterations: int = SCRAM_ITERATIONS, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677 format)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def new_password() -> str:
    """A random password for a generated role (URL- and pgpass-safe characters only)."""
    return secrets.token_urlsafe(24)


def check_role_name(name: str) -> str:
    """Role names become PostgreSQL identifiers: keep them to a plain, portable form."""
    if not ROLE_NAME.match(name or ""):
        from .errors import ElasticCodeError

        raise ElasticCodeError(
            f"user name {name!r} is not valid: use lower-case letters, digits and _ (start with a letter, at most 63)"
        )
    return name


def role_name_for(login: str) -> str:
    """A valid role name derived from an operating-system login (e.g. 'Jane.Doe' -> 'jane_doe')."""
    name = re.sub(r"[^a-z0-9_]", "_", login.lower())
    if not name or not (name[0].isalpha() or name[0] == "_"):
        name = "u_" + name
    return name[:63]


def redact_url(url: str | None) -> str:
    """`url` with any password replaced by ***, for printing."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` readable and writable by the owner only (created so, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def pgpass_line(host: str, role: str, password: str, port: str = "*", database: str = "*") -> str:
    """One line of a libpq password file; ':' and '\\' are escaped as libpq expects."""
    esc = lambda s: s.replace("\\", "\\\\").replace(":", "\\:")  # noqa: E731
    return f"{esc(host)}:{esc(port)}:{esc(database)}:{esc(role)}:{esc(password)}\n"


_URL_PASSWORD = re.compile(r"(://[^/\s:@]*):[^@\s/]*@")


def redact_text(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _URL_PASSWORD.sub(r"\1:***@", text)
