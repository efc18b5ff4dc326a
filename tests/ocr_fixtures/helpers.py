"""Helpers shared by tests/test_ocr_*.py (imported, not a conftest).

* `LocalServer`: a real http.server on 127.0.0.1 in a thread, with routes that
  misbehave in the ways page downloads can.
* `guard_network()`: refuses any socket connection that is not to loopback,
  so a test can prove nothing else is contacted.
* `image_bytes()`: encode a PIL image.
"""
from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image


def image_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


class LocalServer:
    """Routes: path -> callable(handler, hits) sending the response. ``hits`` counts requests per path."""

    def __init__(self):
        self.routes = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self, server.hits[self.path])
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # route builders ----------------------------------------------------------
    @staticmethod
    def body(data: bytes, ctype: str = "image/png", status: int = 200, length: bool = True):
        def send(h, hits):
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            if length:
                h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        return send

    @staticmethod
    def status(code: int):
        def send(h, hits):
            h.send_response(code)
            h.send_header("Content-Length", "0")
            h.end_headers()
        return send

    @staticmethod
    def fail_then(n_failures: int, code: int, then):
        def send(h, hits):
            if hits <= n_failures:
                LocalServer.status(code)(h, hits)
            else:
                then(h, hits)
        return send

    @staticmethod
    def stream(total: int, ctype: str = "image/png"):
        """Sends ``total`` bytes without Content-Length (HTTP/1.0 close-delimited)."""
        def send(h, hits):
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.end_headers()
            chunk = b"\0" * 65536
            sent = 0
            while sent < total:
                h.wfile.write(chunk)
                sent += len(chunk)
        return send

    @staticmethod
    def slow(seconds: float, data: bytes):
        def send(h, hits):
            time.sleep(seconds)
            LocalServer.body(data)(h, hits)
        return send


@contextlib.contextmanager
def guard_network():
    """Inside the block, connecting a socket anywhere but loopback raises and is recorded."""
    attempts: list = []
    real_connect = socket.socket.connect
    real_create = socket.create_connection

    def is_local(address) -> bool:
        host = address[0] if isinstance(address, tuple) else address
        return isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1"))

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address):
            attempts.append(address)
            raise OSError(f"test network guard: connection to {address} refused")
        return real_connect(self, address)

    def create_connection(address, *a, **kw):
        if not is_local(address):
            attempts.append(address)
            raise OSError(f"test network guard: connection to {address} refused")
        return real_create(address, *a, **kw)

    socket.socket.connect = connect
    socket.create_connection = create_connection
    try:
        yield attempts
    finally:
        socket.socket.connect = real_connect
        socket.create_connection = real_create


@pytest.fixture(scope="module")
def server():
    """A LocalServer shared by a test module."""
    with LocalServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_outside_network():
    """Fails the test if it tried to reach anything but loopback (use: import it into a test module)."""
    with guard_network() as attempts:
        yield
    assert attempts == [], f"a test tried to reach {attempts}"
