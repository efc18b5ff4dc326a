"""No folder past 1,000 entries on the tip (GitHub's web view lists 1,000), 5,000 chapters published.

`available_work/` is the exception DESIGN.md fixes (flat: one entry per order on offer); the
test measures it so a change in either direction is seen (docs/SCALING.md, "Folder widths").
"""
import time

from tests.helpers import folder_widths, host, ids_by_state
from tests.test_host_support import png

CHAPTERS = 5000


def test_folder_widths_with_5000_chapters_published_through_a_page_store(board, tmp_path):
    series = tmp_path / "src" / "Wide"
    for n in range(CHAPTERS):
        (series / f"c{n:05d}").mkdir(parents=True)
        (series / f"c{n:05d}" / "001.png").write_bytes(png(20 + n % 50, 30))
    started = time.monotonic()
    out = host("publish", "--repo-url", str(board), "--page-store", str(tmp_path / "pages.git"), str(series),
               timeout=600)
    seconds = time.monotonic() - started
    assert f"Published {CHAPTERS} order(s)" in out.stdout
    assert len(ids_by_state(board)["available"]) == CHAPTERS

    widths = folder_widths(board)
    print(f"\npublish of {CHAPTERS} chapters: {seconds:.1f} s; widest board folders:",
          sorted(widths.items(), key=lambda kv: -kv[1])[:4])
    assert widths["available_work"] == CHAPTERS + 1  # flat by design (+ .gitkeep)
    assert widths["pages"] == 1  # pages are in the store: only .gitkeep
    assert max(w for folder, w in widths.items() if folder != "available_work") <= 1000

    store = folder_widths(tmp_path / "pages-0001.git")
    print("widest store folders:", sorted(store.items(), key=lambda kv: -kv[1])[:3])
    assert store[""] == 257  # 256 shards and the manifest
    assert max(store.values()) <= 1000


def test_local_pages_past_1000_chapters_are_published_with_a_warning(board, tmp_path):
    series = tmp_path / "src" / "Local"
    for n in range(1001):
        (series / f"c{n:05d}").mkdir(parents=True)
        (series / f"c{n:05d}" / "001.png").write_bytes(png(20, 30))
    out = host("publish", "--repo-url", str(board), str(series), timeout=600)
    assert "Published 1001 order(s)" in out.stdout
    assert out.stderr.strip() == ("Warning: pages/ on the board would hold 1002 entries; GitHub's web view lists "
                                  "only 1000. Publish with --page-store URL (docs/HOST.md, \"Page stores\"), or "
                                  "collect with --prune-pages first.")
