"""Which git repositories processors may load code from.

Code only ever comes from git, so the repository URL is a security boundary: no credentials
in the URL (they would be stored and shown in clear; use a credential helper or SSH key), no
`ext::` or other remote-helper transports (they run arbitrary commands), and, when an allowlist
is configured (`[security] repositories = https://github.com/acme/*, /srv/git/*`), only
matching URLs.
"""

from __future__ import annotations

import fnmatch
import re
from urllib.parse import urlsplit

from ..errors import ElasticCodeError

SAFE_SCHEMES = ("https", "http", "ssh", "git", "file")
SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:[\w./~-]+$")


def check_gitrepo(url: str, allowlist: tuple[str, ...] = ()) -> str:
    url = (url or "").strip()
    if not url:
        raise ElasticCodeError("git repository is empty: give a URL or path with -g/--gitrepo")
    if url.startswith("-"):
        raise ElasticCodeError(f"git repository {url!r} starts with '-': give a URL or an absolute path")
    if "::" in url.split("/")[0]:
        raise ElasticCodeError(f"git repository {url!r} uses a remote-helper transport: use https, ssh, git or a path")
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in SAFE_SCHEMES:
            raise ElasticCodeError(
                f"git repository {url!r} uses scheme {parts.scheme!r}: use one of {', '.join(SAFE_SCHEMES)}"
            )
        if parts.password is not None:
            raise ElasticCodeError(
                "git repository URL carries a password: remove it and use a git credential helper or an SSH key"
            )
    elif not (url.startswith("/") or SCP_LIKE.match(url)):
        raise ElasticCodeError(f"git repository {url!r} is not a URL or absolute path: use e.g. https://host/org/repo.git or /srv/git/repo")
    if allowlist and not any(fnmatch.fnmatchcase(url, pattern) for pattern in allowlist):
        raise ElasticCodeError(
            f"git repository {url!r} is not in the allowed repositories ({', '.join(allowlist)}): ask an admin to add it"
        )
    return url
