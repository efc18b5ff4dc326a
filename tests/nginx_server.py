"""git http-backend behind nginx and fcgiwrap on 127.0.0.1, as a production git host serves it (for
benchmarks; tests/servers.py has the git daemon and the Python-served smart HTTP the tests use)."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.servers import CpuGroup, free_port, wait_port


class NginxGitServer:
    """Smart HTTP the way a production git host serves it: nginx (basic auth) in front of
    `git http-backend` run by fcgiwrap, on 127.0.0.1. Same interface as `GitHttpServer`.

    Needs Debian's `nginx-light` and `fcgiwrap` (`bash run.sh setup` installs them).
    """

    BACKEND = "/usr/lib/git-core/git-http-backend"

    def __init__(self, root: Path, user: str = "x-access-token", token: str = "s3cr3t-token-for-tests",
                 port: int | None = None, read_only: bool = False, workers: int = 8):
        self.root = Path(root)
        self.user = user
        self.token = token
        self.port = port or free_port()
        self.read_only = read_only
        self.workers = workers  # fcgiwrap processes: requests served at once
        self.prefix: Path | None = None
        self.procs: list[subprocess.Popen] = []
        self.cpu: CpuGroup | None = None

    @staticmethod
    def available() -> bool:
        import shutil
        return bool(shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) and \
            bool(shutil.which("fcgiwrap") or Path("/usr/sbin/fcgiwrap").exists())

    def url(self, name: str, with_token: bool = True) -> str:
        cred = f"{self.user}:{self.token}@" if with_token else ""
        return f"http://{cred}127.0.0.1:{self.port}/{name}"

    def start(self) -> "NginxGitServer":
        import shutil
        import tempfile
        if not self.available():
            raise RuntimeError("nginx and fcgiwrap are not installed: run `bash run.sh setup` "
                               "(Debian packages nginx-light and fcgiwrap)")
        self.prefix = Path(tempfile.mkdtemp(prefix="wms-nginx-"))
        sock = self.prefix / "fcgiwrap.sock"
        (self.prefix / "htpasswd").write_text(f"{self.user}:{{PLAIN}}{self.token}\n")
        deny = ("if ($arg_service = git-receive-pack) { return 403; }\n"
                "      location ~ /git-receive-pack$ { return 403; }\n") if self.read_only else ""
        temp = "".join(f"  {kind}_temp_path {self.prefix}/{kind};\n"
                       for kind in ("client_body", "fastcgi", "proxy", "uwsgi", "scgi"))
        (self.prefix / "nginx.conf").write_text(f"""
{"user root root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
{temp}  client_max_body_size 0;
  keepalive_requests 10000;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      auth_basic "wms";
      auth_basic_user_file {self.prefix}/htpasswd;
      {deny}
      fastcgi_pass unix:{sock};
      fastcgi_request_buffering off;
      fastcgi_buffering off;
      fastcgi_read_timeout 300s;
      fastcgi_param SCRIPT_FILENAME {self.BACKEND};
      fastcgi_param GIT_PROJECT_ROOT {self.root};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $uri;
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_param REMOTE_ADDR $remote_addr;
      fastcgi_param GIT_PROTOCOL $http_git_protocol;
      fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding;
      fastcgi_param PATH {os.environ.get("PATH", "/usr/bin:/bin")};
    }}
  }}
}}
""")
        for kind in ("client_body", "fastcgi", "proxy", "uwsgi", "scgi"):
            (self.prefix / kind).mkdir()
        fcgiwrap = shutil.which("fcgiwrap") or "/usr/sbin/fcgiwrap"
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.cpu = CpuGroup(f"nginx-{self.port}")
        self.procs.append(subprocess.Popen([fcgiwrap, "-c", str(self.workers), "-s", f"unix:{sock}"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True, preexec_fn=self.cpu.enter))
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                self.stop()
                raise RuntimeError("fcgiwrap did not start")
            time.sleep(0.02)
        self.procs.append(subprocess.Popen([nginx, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
                                            "-e", str(self.prefix / "error.log")],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True, preexec_fn=self.cpu.enter))
        try:
            wait_port(self.port)
        except RuntimeError:
            log = (self.prefix / "error.log").read_text(errors="replace") if (self.prefix / "error.log").exists() else ""
            self.stop()
            raise RuntimeError(f"nginx did not start: {log[-2000:]}")
        return self

    def cpu_seconds(self) -> float | None:
        """CPU time nginx, fcgiwrap and every `git http-backend` they ran have used so far (None
        where no cgroup could be made: fcgiwrap does not wait for its CGI processes, so their
        time shows in no parent's account)."""
        return self.cpu.seconds() if self.cpu is not None else None

    def stop(self) -> None:
        import shutil
        for proc in reversed(self.procs):  # nginx first, then fcgiwrap; each waits for its own children
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        self.procs = []
        if self.cpu is not None:
            self.cpu.remove()
            self.cpu = None
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
