"""Where the board lives: turn a --repo-url into a URL git can use without leaking credentials.

Accepted: https://[user:token@]host/path, http://..., ssh://..., user@host:path (scp
form), git://..., file://..., and plain paths to a bare repository. A token riding in an
https URL is removed from the URL and handed to git through the environment as an HTTP
header, so it is never written into a git config, a commit or an error message.
"""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from coordination.exceptions import InvalidRepoUrl
from coordination.secrets import redact, register_secret

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:(?!//)")


@dataclass(frozen=True)
class Remote:
    url: str  # safe to show: no credentials
    env: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_local(self) -> bool:
        """A folder on this machine (a path or file:// URL), not a server."""
        return self.url.startswith("file://") or self.url.startswith("/")

    def __str__(self) -> str:  # never prints credentials
        return self.url


def parse_repo_url(raw: str) -> Remote:
    if raw is None or not str(raw).strip():
        raise InvalidRepoUrl("No board given: pass --repo-url URL (or set GITHUB_REPO_URL in .env).")
    raw = str(raw).strip()
    if _SCP_LIKE.match(raw):
        return Remote(raw, _ssh_env())
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise InvalidRepoUrl(f"Board URL {redact(raw)} has no host name.")
        env = {}
        if parts.username is not None or parts.password is not None:
            user = unquote(parts.username or "")
            password = unquote(parts.password or "")
            if not password:  # https://TOKEN@github.com/... form
                user, password = "x-access-token", user
            register_secret(password)
            register_secret(parts.password)
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            register_secret(token)
            env = _config_env({"http.extraHeader": f"Authorization: Basic {token}"})
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        return Remote(urlunsplit((scheme, netloc, parts.path, parts.query, "")), env)
    if scheme in ("ssh", "git+ssh"):
        return Remote(raw, _ssh_env())
    if scheme == "git":
        return Remote(raw)
    if scheme == "file":
        return Remote(raw)
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        path = Path(raw).expanduser().resolve()
        return Remote(str(path))
    raise InvalidRepoUrl(
        f"Board URL scheme {scheme!r} is not supported: use https://, ssh://, git://, file:// or a path."
    )


def _ssh_env() -> dict:
    return {"GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=30")}


def _config_env(settings: dict) -> dict:
    """Pass git configuration through the environment (not argv, not a config file)."""
    env = {"GIT_CONFIG_COUNT": str(len(settings))}
    for i, (key, value) in enumerate(settings.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _origin(url: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of a network URL, or None for local paths and file:// URLs."""
    if _SCP_LIKE.match(url):
        return ("ssh", url.split("@", 1)[1].split(":", 1)[0].lower())
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        return None
    if scheme == "git+ssh":
        scheme = "ssh"
    return (scheme, (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else ""))


def related_remote(url: str, board: Remote) -> Remote:
    """A repository the board points to (a page store, a successor board), with the board's
    credentials when it lives on the same host (same scheme, host and port); else with none
    (or with the token riding in ``url`` itself).

    A repository on this machine (a path, file://) is accepted only for a board on this machine
    too: an order must not make a volunteer read a repository of their own.
    """
    remote = parse_repo_url(url)
    target = _origin(remote.url)
    if target is None and not board.is_local:
        raise InvalidRepoUrl(f"{remote.url} is on this machine, but the board is not; refused.")
    if not remote.env and target is not None and target == _origin(board.url):
        return Remote(remote.url, dict(board.env))
    return remote
