"""The forks of a GitHub board, from GitHub's REST API (`GET /repos/OWNER/REPO/forks`): on an open board
on GitHub, a volunteer joins by forking the board, with nothing for the host to do.

One module talks to the API: `list_forks` (pages of 100, at most `MAX_PAGES`), with a timeout and a
clear error for every answer but 200. The dispatcher asks again every `REFRESH_SECONDS` at most.
"""
from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import requests

from coordination.exceptions import WmsError
from coordination.secrets import redact

API = "https://api.github.com"
MAX_PAGES = 50  # 5,000 forks
REFRESH_SECONDS = 300.0
_GITHUB = re.compile(r"^https://(?:[^@/]+@)?github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")


class ForkListError(WmsError):
    """GitHub's fork list could not be read (the dispatcher carries on with volunteers.json)."""


def github_repo(url: str) -> str | None:
    """OWNER/REPO of a board on github.com, else None.

    >>> github_repo("https://github.com/ann/manga-board.git"), github_repo("/srv/board.git")
    ('ann/manga-board', None)
    """
    found = _GITHUB.match(url)
    return f"{found.group(1)}/{found.group(2)}" if found else None


def token_of(url: str) -> str | None:
    """The token riding in a board's https URL (``https://TOKEN@github.com/...`` or ``user:TOKEN@``), if any.

    >>> token_of("https://ghp_x@github.com/a/b.git"), token_of("https://u:ghp_y@github.com/a/b.git"), token_of("/b.git")
    ('ghp_x', 'ghp_y', None)
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    return unquote(parts.password or parts.username or "") or None


def list_forks(repo: str, *, api: str = API, headers: dict | None = None, timeout: float = 30.0) -> list[str]:
    """The clone URLs of ``repo``'s (OWNER/REPO) forks, oldest first as GitHub lists them."""
    urls: list[str] = []
    for page in range(1, MAX_PAGES + 1):
        try:
            answer = requests.get(f"{api.rstrip('/')}/repos/{repo}/forks", params={"per_page": 100, "page": page,
                                                                                  "sort": "oldest"},
                                  headers={"Accept": "application/vnd.github+json", **(headers or {})},
                                  timeout=timeout)
        except requests.RequestException as exc:
            raise ForkListError(redact(f"Could not ask {api} for the forks of {repo}: {exc}")) from None
        if answer.status_code != 200:
            raise ForkListError(f"{api} answered {answer.status_code} for the forks of {repo}: "
                                f"{redact(answer.text[:200])}")
        try:
            items = answer.json()
        except ValueError:
            raise ForkListError(f"{api} did not answer JSON for the forks of {repo}") from None
        if not isinstance(items, list):
            raise ForkListError(f"{api} answered something other than a list for the forks of {repo}")
        urls += [i["clone_url"] for i in items if isinstance(i, dict) and isinstance(i.get("clone_url"), str)]
        if len(items) < 100:
            break
    return urls
