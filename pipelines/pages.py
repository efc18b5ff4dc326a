"""Getting page images: fetch (http(s) or board path), verify, decode.

Each function raises `PageError` with a message naming the page and what to do;
nothing here lets a bad page crash the caller.

Example::

    >>> from pipelines.pages import decode_image
    >>> import io; from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (40, 30), "white").save(buf, "PNG")
    >>> decode_image(buf.getvalue(), "demo.png").size
    (40, 30)
"""
from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import time
import warnings
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import requests
from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.exceptions import PageError

# A 2400x3400 page is 8.2 MP; 60 MP leaves room for double spreads at 600 dpi.
MAX_PIXELS = 60_000_000
MIN_SIDE = 16


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
CONNECT_TIMEOUT = _env_number("WMS_PAGE_CONNECT_TIMEOUT", 5.0)
READ_TIMEOUT = _env_number("WMS_PAGE_READ_TIMEOUT", 30.0)  # longest silence while receiving
DOWNLOAD_DEADLINE = _env_number("WMS_PAGE_DEADLINE", 300.0)  # longest whole download (a server that trickles)
RETRIES = 3  # extra attempts after the first, for 5xx, 429 and connection errors
BACKOFF = 0.5  # seconds; doubles each retry
ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class PageImage:
    """A decoded page: RGB pixels as PIL image plus the name it came with."""

    name: str
    image: Image.Image

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def fetch_url(
    url: str,
    name: str,
    *,
    session: requests.Session | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
) -> bytes:
    """Download one page over http(s).

    Retries (with exponential backoff) connection errors, timeouts, 429 and 5xx;
    never retries other 4xx. Refuses non-image content types and bodies over
    ``max_bytes`` (checked while streaming, not only from Content-Length), and
    stops a download that takes longer than ``deadline`` seconds in all.
    """
    deadline = DOWNLOAD_DEADLINE if deadline is None else deadline
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise PageError(
            name,
            f"URL scheme {scheme or '(none)'!r} is not accepted in {url!r}; "
            "use an http(s) URL or a board path under pages/<work_id>/",
        )
    http = session or requests.Session()
    last: str = ""
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * (2 ** (attempt - 1)))
        try:
            with http.get(url, stream=True, timeout=timeout, allow_redirects=True) as resp:
                status = resp.status_code
                if status == 429 or status >= 500:
                    last = f"server answered HTTP {status} for {url}"
                    continue
                if status >= 400:
                    raise PageError(
                        name, f"server answered HTTP {status} for {url}; check the URL (not retried)"
                    )
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if ctype and not ctype.startswith(ACCEPTED_CONTENT_TYPES):
                    raise PageError(
                        name,
                        f"{url} sent Content-Type {ctype!r}, not an image "
                        "(an error or login page?)",
                    )
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise PageError(
                        name, f"{url} is {int(length)} bytes, over the {max_bytes}-byte limit"
                    )
                buf = bytearray()
                started = time.monotonic()
                for chunk in _chunks(resp):
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise PageError(
                            name, f"{url} sent more than the {max_bytes}-byte limit; download stopped"
                        )
                    if time.monotonic() - started > deadline:
                        raise PageError(
                            name, f"{url} was still sending after {deadline:g} s ({len(buf)} bytes); "
                            "download stopped", permanent=False,
                        )
                return bytes(buf)
        except PageError:
            raise
        except (requests.ConnectionError, requests.Timeout) as exc:
            kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
            last = f"{kind} for {url} ({type(exc).__name__})"
        except requests.RequestException as exc:
            raise PageError(name, f"cannot download {url}: {exc}") from exc
    raise PageError(name, f"{last}; gave up after {retries + 1} attempts", permanent=False)


def _chunks(resp):
    """The body as it arrives: at most one socket read per chunk, so a slow server is noticed."""
    raw = resp.raw
    if not hasattr(raw, "read1"):
        yield from resp.iter_content(64 * 1024)
        return
    try:
        while True:
            chunk = raw.read1(64 * 1024, decode_content=True)
            if not chunk:
                return
            yield chunk
    except Exception as exc:  # urllib3's read errors, as requests would name them
        import urllib3.exceptions as u3

        if isinstance(exc, (u3.ReadTimeoutError, TimeoutError)):
            raise requests.Timeout(str(exc)) from None
        if isinstance(exc, (u3.ProtocolError, u3.DecodeError, OSError)):
            raise requests.ConnectionError(str(exc)) from None
        raise


def check_board_path(path: object, work_id: str, name: str) -> str:
    """Return ``path`` if it is a plain relative path under ``pages/<work_id>/``."""
    if not isinstance(path, str) or not path:
        raise PageError(name, "board path must be a non-empty string")
    prefix = f"pages/{work_id}/"
    bad = (
        "\\" in path
        or "\x00" in path
        or path.startswith("/")
        or ".." in path.split("/")
        or ".." in path
        or posixpath.normpath(path) != path
        or not path.startswith(prefix)
        or len(path) == len(prefix)
    )
    if bad:
        raise PageError(name, f"board path {path!r} is refused: pages must lie under {prefix}")
    return path


def verify_sha256(data: bytes, expected: object, name: str) -> None:
    if not isinstance(expected, str) or not _SHA256.match(expected.lower()):
        raise PageError(name, f"sha256 {expected!r} is not 64 hex digits")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.lower():
        raise PageError(
            name, f"sha256 mismatch: order says {expected.lower()}, file has {actual} "
            "(the page changed after the order was written?)"
        )


def read_page_bytes(page: dict, work_id: str, read_board_file: Callable[[str], bytes], *,
                    read_store_page: Callable[[dict], bytes] | None = None, **fetch_kw) -> bytes:
    """Bytes of one order page: from a page ``store`` (pipelines/store_pages.py), ``path`` from the
    board (sha256 required) or ``url``."""
    name = str(page.get("name") or page.get("path") or page.get("url") or "?")
    if "store" in page:
        if read_store_page is None:
            raise PageError(name, "page is in a page store, and this reader has no access to stores",
                            permanent=False)
        return read_store_page(page)
    if "path" in page:
        path = check_board_path(page["path"], work_id, name)
        if "sha256" not in page:
            raise PageError(name, f"board page {path} has no sha256 in the order")
        try:
            data = read_board_file(path)
        except (OSError, ValueError, KeyError) as exc:
            raise PageError(name, f"cannot read {path} from the board: {exc}") from exc
        verify_sha256(data, page["sha256"], name)
        return data
    if "url" in page:
        data = fetch_url(str(page["url"]), name, **fetch_kw)
        if "sha256" in page:
            verify_sha256(data, page["sha256"], name)
        return data
    raise PageError(name, "page has neither 'path' nor 'url'")


def decode_image(data: bytes, name: str, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode and normalise page bytes to an upright RGB image.

    Refuses non-images, truncated files and pages over ``max_pixels`` (checked
    from the header before any pixel is decoded). Applies EXIF rotation,
    flattens alpha onto white and converts CMYK, palette, grey and 16-bit modes.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise PageError(
                    name,
                    f"image is {w}x{h} ({w * h / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP "
                    "limit (a decompression bomb or an oversized scan; downscale it)",
                )
            if min(w, h) < MIN_SIDE:
                raise PageError(name, f"image is {w}x{h}, too small to hold text")
            img.load()
    except PageError:
        raise
    except UnidentifiedImageError:
        raise PageError(name, "not an image Pillow can read (expected JPEG, PNG, WebP...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PageError(name, f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise PageError(name, f"image data is truncated or corrupt ({exc})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not cost the page
        pass
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else arr * 0
        return Image.fromarray(scaled.astype("uint8"), "L").convert("RGB")
    return img.convert("RGB")  # CMYK, YCbCr, P, L, 1, LAB...


def load_page(page: dict, work_id: str, read_board_file: Callable[[str], bytes], *,
              read_store_page: Callable[[dict], bytes] | None = None, **fetch_kw) -> PageImage:
    name = str(page.get("name") or page.get("path") or page.get("url") or "?")
    data = read_page_bytes(page, work_id, read_board_file, read_store_page=read_store_page, **fetch_kw)
    return PageImage(name, decode_image(data, name))


def load_file(path: str) -> PageImage:
    """Read a local image file (the CLI's input)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise PageError(path, f"cannot read file: {exc.strerror or exc}") from None
    return PageImage(path, decode_image(data, path))
