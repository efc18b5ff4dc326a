"""Real git servers on 127.0.0.1 for tests and benchmarks: git daemon and git http-backend."""
from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def tree_cpu_seconds(pids) -> float:
    """CPU seconds used so far by these processes and all their descendants, living or reaped
    (Linux /proc: each live process's own time plus that of the children it has waited for)."""
    parent: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        times[pid] = sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
    wanted = set(pids)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    return sum(times.get(pid, 0.0) for pid in wanted)


class CpuGroup:
    """A cgroup (v1 cpuacct) that counts the CPU time of every process started in it and of all
    their descendants, whoever waits for them. None of it when cgroups cannot be made here."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self, name: str):
        self.path: Path | None = self.ROOT / f"wms-{os.getpid()}-{name}"
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / "cpuacct.usage").read_text()
        except OSError:
            self.path = None

    def enter(self) -> None:
        """Move the calling process (a child between fork and exec) into the group."""
        if self.path is not None:
            with open(self.path / "cgroup.procs", "w") as handle:
                handle.write(str(os.getpid()))

    def seconds(self) -> float | None:
        if self.path is None:
            return None
        try:
            return int((self.path / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        if self.path is not None:
            try:
                self.path.rmdir()
            except OSError:
                pass  # processes still inside: the kernel keeps it until they are gone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class GitDaemon:
    """`git daemon` serving every repository under ``root`` with push enabled."""

    def __init__(self, root: Path, port: int | None = None):
        self.root = Path(root)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> "GitDaemon":
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", f"--base-path={self.root}",
             "--listen=127.0.0.1", f"--port={self.port}", "--informative-errors", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_port(self.port)
        return self

    def cpu_seconds(self) -> float:
        """CPU time the daemon and the git processes it ran have used so far."""
        return tree_cpu_seconds([self.proc.pid]) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class GitHttpServer:
    """Smart HTTP through `git http-backend`, behind basic auth (user + token)."""

    def __init__(self, root: Path, user: str = "x-access-token", token: str = "s3cr3t-token-for-tests",
                 port: int | None = None, read_only: bool = False):
        self.root = Path(root)
        self.user = user
        self.token = token
        self.port = port or free_port()
        self.read_only = read_only
        self.requests: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def url(self, name: str, with_token: bool = True) -> str:
        cred = f"{self.user}:{self.token}@" if with_token else ""
        return f"http://{cred}127.0.0.1:{self.port}/{name}"

    # what a subclass may change: refuse a request, add to git's environment, note what was served
    def admit(self, command: str, path: str, query: str) -> tuple[int, str] | None:
        """None to serve the request, or (HTTP status, message) to refuse it."""
        return None

    def backend_env(self) -> dict:
        return {}

    def served(self, command: str, path: str, query: str, output: bytes) -> None:
        pass

    def start(self) -> "GitHttpServer":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _auth_ok(self) -> bool:
                expected = "Basic " + base64.b64encode(f"{outer.user}:{outer.token}".encode()).decode()
                return self.headers.get("Authorization") == expected

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self):
                outer.requests.append(f"{self.command} {self.path}")
                body = self._body()
                if not self._auth_ok():
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="wms"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                if outer.read_only and ("git-receive-pack" in path or "service=git-receive-pack" in query):
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                refusal = outer.admit(self.command, path, query)
                if refusal is not None:
                    status, text = refusal
                    data = text.encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(outer.root), "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": outer.user, "REMOTE_ADDR": "127.0.0.1",
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                }
                env.update(outer.backend_env())
                proc = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env, timeout=120)
                outer.served(self.command, path, query, proc.stdout)
                head, _, payload = proc.stdout.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = proc.stdout.partition(b"\n\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


RULESET_HOOK = """#!/bin/sh
# GitHub's ruleset on main (no force push, no deletion) and its read-only refs/pull/*
zero=0000000000000000000000000000000000000000
status=0
while read old new ref; do
  case "$ref" in
    refs/pull/*)
      echo "ruleset: $ref is read-only" >&2; echo "pull $ref" >> "{log}"; status=1 ;;
    refs/heads/main)
      if [ "$new" = "$zero" ]; then
        echo "ruleset: cannot delete main" >&2; echo "delete $ref" >> "{log}"; status=1
      elif [ "$old" != "$zero" ] && ! git merge-base --is-ancestor "$old" "$new"; then
        echo "ruleset: cannot force-push to main" >&2; echo "force $ref" >> "{log}"; status=1
      fi ;;
  esac
done
exit $status
"""


class GitHubLikeServer(GitHttpServer):
    """Smart HTTP with a token, behaving the way GitHub does where the board's protocol can tell:

    - ``ruleset``: a pre-receive hook on every repository served refuses a force push to `main`,
      the deletion of `main` and any push under `refs/pull/` (`ruleset_refusals()` reads them);
    - ``filters``: the partial-clone filters served (None: any; a tuple such as ("blob:none",):
      only those, through uploadpackfilter.<filter>.allow; () : none at all);
    - ``delay``: seconds added to every request (a network round trip);
    - ``events``: every read (a fetch or clone: its ref advertisement) and push (a receive-pack
      request), as (time.monotonic(), "read" | "push");
    - a governor: with ``push_limit`` N, a push beyond N in the last ``push_window`` seconds is
      refused with HTTP 429 and a "rate limit" message (``governor="refuse"``), or made to wait
      until it is within the rate (``governor="delay"``).
    """

    def __init__(self, root: Path, *, ruleset: bool = True, filters: tuple | None = None, delay: float = 0.0,
                 push_limit: int | None = None, push_window: float = 60.0, governor: str = "refuse", **kw):
        super().__init__(root, **kw)
        self.ruleset = ruleset
        self.filters = filters
        self.delay = delay
        self.push_limit = push_limit
        self.push_window = push_window
        self.governor = governor
        self.events: list[tuple[float, str]] = []
        self.repo_events: list[tuple[float, str, str]] = []  # (time, "read" | "push", the repository's folder)
        self.throttled: list[float] = []  # when the governor refused a push
        self._admitted: list[float] = []  # pushes let through, for the governor
        self._lock = threading.Lock()

    def refusal_log(self, repo: Path) -> Path:
        return Path(repo) / "ruleset-refusals.log"

    def start(self) -> "GitHubLikeServer":
        if self.ruleset:
            for repo in self.root.iterdir():
                if (repo / "HEAD").exists():
                    self.protect(repo)
        return super().start()

    def protect(self, repo: Path) -> None:
        """Install the ruleset hook in the bare repository ``repo``."""
        hook = Path(repo) / "hooks" / "pre-receive"
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(RULESET_HOOK.replace("{log}", str(self.refusal_log(repo))))
        hook.chmod(0o755)

    def ruleset_refusals(self) -> list[str]:
        out = []
        for repo in self.root.iterdir():
            log = self.refusal_log(repo)
            if log.exists():
                out += log.read_text().splitlines()
        return out

    def pushes(self) -> list[float]:
        return [t for t, kind in self.events if kind == "push"]

    def reads(self) -> list[float]:
        return [t for t, kind in self.events if kind == "read"]

    def admit(self, command: str, path: str, query: str) -> tuple[int, str] | None:
        if self.delay:
            time.sleep(self.delay)  # the round trip a remote server adds
        repo = path.strip("/").split("/", 1)[0]
        if command == "GET" and path.endswith("/info/refs") and "service=git-upload-pack" in query:
            with self._lock:
                self.events.append((time.monotonic(), "read"))
                self.repo_events.append((time.monotonic(), "read", repo))
        if not (command == "GET" and path.endswith("/info/refs") and "service=git-receive-pack" in query):
            return None
        if self.push_limit is None:
            return None
        while True:
            with self._lock:
                now = time.monotonic()
                self._admitted = [t for t in self._admitted if now - t < self.push_window]
                if len(self._admitted) < self.push_limit:
                    self._admitted.append(now)
                    return None
                if self.governor == "refuse":
                    self.throttled.append(now)
                    return 429, "rate limit exceeded: too many pushes to this repository, try again later\n"
                wait = self._admitted[0] + self.push_window - now
            time.sleep(max(wait, 0.01))  # GitHub's proxy holds the push until the rate allows it

    def backend_env(self) -> dict:
        if self.filters is None:
            return {}
        pairs = [("uploadpack.allowFilter", "true" if self.filters else "false"), ("uploadpackfilter.allow", "false")]
        pairs += [(f"uploadpackfilter.{name}.allow", "true") for name in self.filters]
        env = {"GIT_CONFIG_COUNT": str(len(pairs))}
        for i, (key, value) in enumerate(pairs):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        return env

    def served(self, command: str, path: str, query: str, output: bytes) -> None:
        if command == "POST" and path.endswith("/git-receive-pack"):
            with self._lock:
                self.events.append((time.monotonic(), "push"))
                self.repo_events.append((time.monotonic(), "push", path.strip("/").split("/", 1)[0]))


def busiest(times: list[float], window: float) -> int:
    """Most events in any ``window`` seconds.

    >>> busiest([0, 1, 2, 61, 62], 60)
    3
    >>> busiest([], 1)
    0
    """
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
