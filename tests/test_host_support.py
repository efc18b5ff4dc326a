"""Support for the host tests (no tests here): a real SMTP server, a stand-in OCR engine for
worker processes, page images, and the host CLI run in-process with click's CliRunner."""
from __future__ import annotations

import io
import json
import os
import subprocess
import time
from email import message_from_bytes
from email.message import Message
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from tests.helpers import PY, ROOT
from tests.servers import free_port


# ------------------------------------------------------------------ the host CLI in-process
def invoke(*args: str, input: str | None = None):
    from host_tools.cli import cli
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


# ------------------------------------------------------------------ an SMTP server on 127.0.0.1
class SmtpSink:
    """aiosmtpd on 127.0.0.1 that keeps every message it receives.

    ``tls_cert``/``tls_key`` turn on STARTTLS (required), ``users`` turns on AUTH LOGIN/PLAIN.
    """

    def __init__(self, tls: tuple[Path, Path] | None = None, users: dict[str, str] | None = None):
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.port = free_port()
        self.tls = tls
        self.users = users
        self.logins: list[str] = []
        self.controller = None

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"

    def _auth(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(user) == password:
                self.logins.append(user)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def __enter__(self) -> "SmtpSink":
        from aiosmtpd.controller import Controller
        kwargs = {}
        if self.tls:
            import ssl
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            kwargs.update(tls_context=ctx, require_starttls=True)
        if self.users is not None:
            kwargs.update(authenticator=self._auth, auth_required=True, auth_require_tls=bool(self.tls))
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    def wait(self, count: int, timeout: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


# ------------------------------------------------------------------ pages and chapters
def png(width: int = 40, height: int = 60, shade: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), shade).save(buf, format="PNG")
    return buf.getvalue()


def chapter_tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """root/SERIES/CHAPTER/001.png... with ``layout`` = {series: {chapter: pages}}."""
    for series, chapters in layout.items():
        for chapter, pages in chapters.items():
            folder = root / series / chapter
            folder.mkdir(parents=True)
            for n in range(1, pages + 1):
                (folder / f"{n:03d}.png").write_bytes(png(30 + n, 50 + n))
    return root


# ------------------------------------------------------------------ a worker with a stand-in OCR engine
def fake_ocr(order: dict, ctx) -> dict:
    """Reads each page from the board like the real pipeline and returns mokuro-shaped pages."""
    pages = []
    for i, page in enumerate(order["pages"], start=1):
        data = ctx.read_board_file(page["path"])
        width, height = Image.open(io.BytesIO(data)).size
        lines = [f"{order['series']}", f"{order['chapter']} p{i}"]
        block = {"box": [2, 3, 20, 40], "vertical": True, "font_size": 11,
                 "lines_coords": [[[2, 3], [10, 3], [10, 40], [2, 40]], [[11, 3], [20, 3], [20, 40], [11, 40]]],
                 "lines": lines}
        pages.append({"name": page["name"], "img_width": width, "img_height": height, "blocks": [block],
                      "text": "".join(lines)})
    return {"engine": "fake", "engine_version": "1.0", "timings": {"total": 0.01}, "pages": pages}


def fake_registry():
    from pipelines import default_registry
    registry = default_registry()
    registry.register("ocr_chapter", lambda: fake_ocr)
    return registry


WORKER_CODE = (
    "import sys; sys.path.insert(0, sys.argv.pop(1));"
    "from configurations import worker_config;"
    "from coordination.runtime.cli import build_worker_cli;"
    "from tests.test_host_support import fake_registry;"
    "build_worker_cli(fake_registry, worker_config)(prog_name='worker')"
)


def run_ocr_worker(url: str, workdir: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A real worker process (testing preset) whose ocr_chapter engine is `fake_ocr`; runs until it stops."""
    cmd = [PY, "-c", WORKER_CODE, str(ROOT), "--repo-url", url, "--environment", "testing", "--workdir",
           str(workdir), "--max-failures", "2", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main_files(bare: Path) -> list[str]:
    out = subprocess.run(["git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


__all__ = ["invoke", "SmtpSink", "self_signed_cert", "png", "chapter_tree", "fake_ocr", "fake_registry",
           "run_ocr_worker", "jsonl", "main_files"]
