"""Page input: downloads (against a real HTTP server on 127.0.0.1), board paths, image validation."""
from __future__ import annotations

import hashlib
import io
import socket

import pytest
from PIL import Image

from pipelines import pages
from pipelines.exceptions import PageError
from tests.ocr_fixtures.helpers import LocalServer, image_bytes, no_outside_network, server  # noqa: F401 (fixtures)

PNG = image_bytes(Image.new("RGB", (64, 48), "white"))
FAST = dict(backoff=0.01, timeout=(2.0, 1.0))


def route(server, path, handler):
    server.routes[path] = handler
    server.hits.pop(path, None)
    return server.base + path


# -- downloads ---------------------------------------------------------------------

def test_download_ok(server):
    url = route(server, "/ok.png", LocalServer.body(PNG))
    assert pages.fetch_url(url, "p", **FAST) == PNG


def test_octet_stream_is_accepted_and_decoded(server):
    url = route(server, "/raw", LocalServer.body(PNG, "application/octet-stream"))
    assert pages.decode_image(pages.fetch_url(url, "p", **FAST), "p").size == (64, 48)


def test_4xx_is_not_retried(server):
    url = route(server, "/missing.png", LocalServer.status(404))
    with pytest.raises(PageError, match="HTTP 404") as err:
        pages.fetch_url(url, "p", **FAST)
    assert err.value.permanent
    assert server.hits["/missing.png"] == 1


def test_5xx_is_retried_then_succeeds(server):
    url = route(server, "/flaky.png", LocalServer.fail_then(2, 503, LocalServer.body(PNG)))
    assert pages.fetch_url(url, "p", **FAST) == PNG
    assert server.hits["/flaky.png"] == 3


def test_5xx_gives_up_with_transient_error(server):
    url = route(server, "/down.png", LocalServer.status(502))
    sleeps = []
    with pytest.raises(PageError, match="HTTP 502.*4 attempts") as err:
        pages.fetch_url(url, "p", backoff=0.01, retries=3, sleep=sleeps.append)
    assert not err.value.permanent
    assert server.hits["/down.png"] == 4
    assert sleeps == [0.01, 0.02, 0.04]  # exponential backoff


def test_html_content_type_refused(server):
    url = route(server, "/login", LocalServer.body(b"<html>please log in</html>", "text/html"))
    with pytest.raises(PageError, match="text/html.*not an image") as err:
        pages.fetch_url(url, "p", **FAST)
    assert err.value.permanent


def test_size_cap_from_content_length(server):
    url = route(server, "/big-cl.png", LocalServer.body(b"\0" * 5000))
    with pytest.raises(PageError, match="over the 1000-byte limit"):
        pages.fetch_url(url, "p", max_bytes=1000, **FAST)


def test_size_cap_while_streaming(server):
    url = route(server, "/endless.png", LocalServer.stream(10 * 65536))
    with pytest.raises(PageError, match="more than the 100000-byte limit"):
        pages.fetch_url(url, "p", max_bytes=100_000, **FAST)


def test_read_timeout_is_retried_then_transient(server):
    url = route(server, "/slow.png", LocalServer.slow(1.5, PNG))
    with pytest.raises(PageError, match="timed out") as err:
        pages.fetch_url(url, "p", retries=1, backoff=0.01, timeout=(2.0, 0.3))
    assert not err.value.permanent
    assert server.hits["/slow.png"] == 2


def test_connection_refused_is_transient():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    with pytest.raises(PageError, match="connection failed") as err:
        pages.fetch_url(f"http://127.0.0.1:{port}/x.png", "p", retries=1, **{"backoff": 0.01})
    assert not err.value.permanent


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.png", "data:image/png;base64,AA", "127.0.0.1/x.png"])
def test_other_schemes_refused(url):
    with pytest.raises(PageError, match="scheme .* is not accepted") as err:
        pages.fetch_url(url, "p")
    assert err.value.permanent


# -- board paths -------------------------------------------------------------------

WORK = "my-series--ch-001"


@pytest.mark.parametrize("path", [
    "pages/my-series--ch-001/../other/001.png",
    "pages/other-work/001.png",
    "/etc/passwd",
    "pages/my-series--ch-001/",
    "pages/my-series--ch-001/sub/../../x.png",
    "pages\\my-series--ch-001\\001.png",
    "pages/my-series--ch-001//001.png",
    "pages/my-series--ch-001/..png/..",
    "orders/my-series--ch-001/001.png",
    None,
])
def test_board_path_leaving_pages_dir_is_refused(path):
    read = []
    with pytest.raises(PageError, match="refused|non-empty"):
        pages.read_page_bytes({"name": "x", "path": path, "sha256": "0" * 64}, WORK, read.append)
    assert read == []  # the board was never asked


def test_board_page_sha256_checked():
    data = PNG
    good = hashlib.sha256(data).hexdigest()
    board = {f"pages/{WORK}/001.png": data}
    page = {"name": "001.png", "path": f"pages/{WORK}/001.png", "sha256": good}
    assert pages.read_page_bytes(page, WORK, board.__getitem__) == data
    with pytest.raises(PageError, match="sha256 mismatch") as err:
        pages.read_page_bytes({**page, "sha256": "a" * 64}, WORK, board.__getitem__)
    assert err.value.permanent
    with pytest.raises(PageError, match="no sha256"):
        pages.read_page_bytes({"name": "001.png", "path": page["path"]}, WORK, board.__getitem__)
    with pytest.raises(PageError, match="64 hex digits"):
        pages.read_page_bytes({**page, "sha256": "xyz"}, WORK, board.__getitem__)


def test_board_read_failure_is_a_page_error():
    def read(path):
        raise FileNotFoundError(f"{path} not in snapshot")
    with pytest.raises(PageError, match="cannot read .* from the board"):
        pages.read_page_bytes({"name": "a", "path": f"pages/{WORK}/a.png", "sha256": "0" * 64}, WORK, read)


def test_url_page_with_sha256_is_verified(server):
    url = route(server, "/sum.png", LocalServer.body(PNG))
    with pytest.raises(PageError, match="sha256 mismatch"):
        pages.read_page_bytes({"name": "a", "url": url, "sha256": "b" * 64}, WORK, None, **FAST)


def test_page_without_source():
    with pytest.raises(PageError, match="neither 'path' nor 'url'"):
        pages.read_page_bytes({"name": "a"}, WORK, None)


# -- decoding ----------------------------------------------------------------------

def test_not_an_image():
    with pytest.raises(PageError, match="not an image") as err:
        pages.decode_image(b"%PDF-1.4 this is a pdf", "doc.pdf")
    assert err.value.permanent


def test_truncated_image():
    data = image_bytes(Image.effect_noise((300, 300), 60).convert("RGB"), "JPEG", quality=90)
    with pytest.raises(PageError, match="truncated or corrupt"):
        pages.decode_image(data[: len(data) // 2], "cut.jpg")


def test_decompression_bomb_refused_before_decoding():
    bomb = image_bytes(Image.new("1", (9000, 9000), 1))  # 81 MP of white compresses to a few KB
    assert len(bomb) < 200_000
    with pytest.raises(PageError, match=r"\(81 MP\), over the 60 MP limit"):
        pages.decode_image(bomb, "bomb.png")


def test_pillow_bomb_guard_also_maps_to_page_error():
    data = image_bytes(Image.new("L", (400, 400), 255))
    with pytest.raises(PageError, match="decompression bomb"):
        # with our own limit lifted, Pillow's limit (here lowered) still stops it
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = 1000
        try:
            pages.decode_image(data, "x.png", max_pixels=10**9)
        finally:
            Image.MAX_IMAGE_PIXELS = old


def test_tiny_image_refused():
    with pytest.raises(PageError, match="too small"):
        pages.decode_image(image_bytes(Image.new("RGB", (8, 400))), "strip.png")


def test_cmyk_becomes_rgb():
    img = Image.new("CMYK", (40, 30), (0, 0, 0, 0))  # CMYK white
    out = pages.decode_image(image_bytes(img, "JPEG"), "c.jpg")
    assert out.mode == "RGB" and min(out.getpixel((5, 5))) > 240


def test_palette_with_transparency_flattens_on_white():
    img = Image.new("P", (40, 30), 0)
    img.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    img.info["transparency"] = 0
    out = pages.decode_image(image_bytes(img, "PNG", transparency=0), "p.png")
    assert out.mode == "RGB" and out.getpixel((3, 3)) == (255, 255, 255)


def test_rgba_flattens_on_white():
    img = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    img.putpixel((1, 1), (0, 0, 0, 255))
    out = pages.decode_image(image_bytes(img), "a.png")
    assert out.getpixel((5, 5)) == (255, 255, 255) and out.getpixel((1, 1)) == (0, 0, 0)


def test_16_bit_grey_is_scaled():
    img = Image.new("I;16", (40, 30), 1000)
    img.putpixel((0, 0), 60000)
    out = pages.decode_image(image_bytes(img), "g16.png")
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((5, 5)) == (0, 0, 0)


def test_exif_rotation_applied():
    img = Image.new("RGB", (60, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = pages.decode_image(image_bytes(img, "JPEG", exif=exif.tobytes()), "r.jpg")
    assert out.size == (20, 60)


def test_load_file_missing(tmp_path):
    with pytest.raises(PageError, match="cannot read file"):
        pages.load_file(str(tmp_path / "nope.png"))
