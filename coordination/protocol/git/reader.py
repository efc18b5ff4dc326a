"""Files of one board commit, read for a processor thread (its own git processes, thread-safe)."""
from __future__ import annotations

from pathlib import Path

from coordination.exceptions import WmsError
from coordination.protocol.git.objects import MODE_LINK
from coordination.protocol.git.run import GitRunner


def safe_board_path(path: str) -> str:
    """``path`` if it is a plain relative path inside the board; PermissionError otherwise.

    >>> safe_board_path("pages/a/001.png")
    'pages/a/001.png'
    >>> safe_board_path("../etc/passwd")
    Traceback (most recent call last):
    ...
    PermissionError: board path '../etc/passwd' leaves the board or is not normalised; refused
    """
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        raise PermissionError(f"board path {path!r} is not a plain relative path; refused")
    if path.startswith("/") or any(part in ("..", ".", "") for part in path.split("/")):
        raise PermissionError(f"board path {path!r} leaves the board or is not normalised; refused")
    return path


class TreeFileReader:
    """Reads files of one board commit for a processor thread.

    Refuses absolute paths, paths that climb out of the board, symbolic links and folders.
    ``remote_env``: a partial clone fetches missing files on demand and needs the remote's
    credentials (None for a full clone, which never fetches here).
    """

    def __init__(self, repo_path: Path, commit: str, max_bytes: int = 200 * 1024 * 1024, timeout: float = 120,
                 remote_env: dict | None = None, url: str = "the board"):
        self.commit = commit
        self.max_bytes = max_bytes
        self.fetches = remote_env is not None
        self.runner = GitRunner(Path(repo_path), url, remote_env, timeout)
        self._prefetched: set[str] = set()

    def _prefetch(self, folder: str) -> None:
        """In a partial clone, fetch the files of ``folder`` that are missing in one request, not one by one."""
        if folder in self._prefetched:
            return
        self._prefetched.add(folder)
        try:
            code, out, _ = self.runner.run(["rev-list", "--objects", "--no-object-names", "--missing=print",
                                            f"{self.commit}:{folder}"], network=False)
            missing = [ln[1:] for ln in out.split() if ln.startswith("?")]
            if code == 0 and missing:
                self.runner.fetch_by_id(missing, classify=False)
        except WmsError:
            pass  # each file is then fetched on demand

    def read_file(self, path: str) -> bytes:
        clean = safe_board_path(path)
        if self.fetches and "/" in clean:
            self._prefetch(clean.rsplit("/", 1)[0])
        code, listing, _ = self.runner.run_raw(["ls-tree", "-z", "-l", self.commit, "--", clean])
        if code != 0 or not listing:
            raise FileNotFoundError(f"{clean} is not on the board")
        meta, _, _name = listing.rstrip(b"\0").partition(b"\t")
        mode, kind, sha, size = meta.decode().split()
        if mode == MODE_LINK:
            raise PermissionError(f"{clean} is a symbolic link on the board; refused")
        if kind != "blob":
            raise IsADirectoryError(f"{clean} is a folder, not a file")
        if int(size) > self.max_bytes:
            raise ValueError(f"{clean} is {int(size)} bytes, over the {self.max_bytes}-byte limit")
        code, blob, _ = self.runner.run_raw(["cat-file", "blob", sha])
        if code != 0:
            raise FileNotFoundError(f"{clean} could not be read from the local clone")
        return blob
