"""Turn what the host has into chapters: folders of page images, .cbz files, URL manifests.

- `SERIES/CHAPTER/<pages>`: a folder of series folders, a series folder, or one chapter folder
- `NAME.cbz`: a zip of page images (series = the folder it is in, chapter = its name)
- `NAME.csv`: header `series,chapter,page_url`, one row a page in page order
- `NAME.json`: `[{"series": ..., "chapter": ..., "pages": [url, ...]}]`
"""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from host_tools.admin import Chapter, PageFile

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
MAX_PAGE_BYTES = 100 * 1024 * 1024


class SourceError(ValueError):
    pass


def natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _images(folder: Path) -> list[Path]:
    """The page files of ``folder``, symbolic links included (a link, even a broken one, is refused by
    `_read_page` with its name, never dropped without a word)."""
    return sorted((p for p in folder.iterdir() if (p.is_file() or p.is_symlink()) and p.suffix.lower() in
                   IMAGE_SUFFIXES and not p.name.startswith(".")), key=lambda p: natural_key(p.name))


# what each image format's file starts with (offset, bytes)
_SIGNATURES = {
    "PNG": [(0, b"\x89PNG")],
    "JPEG": [(0, b"\xff\xd8\xff")],
    "GIF": [(0, b"GIF87a"), (0, b"GIF89a")],
    "WebP": [(8, b"WEBP")],
    "BMP": [(0, b"BM")],
    "TIFF": [(0, b"II*\x00"), (0, b"MM\x00*")],
}


def check_image(name: str, data: bytes) -> None:
    """Refuse a page that is not an image of a format the workers read (told by its first bytes,
    whatever its name says), so a bad page fails here and not later on a volunteer's machine."""
    for fmt, marks in _SIGNATURES.items():
        if any(data[offset:offset + len(mark)] == mark for offset, mark in marks):
            if fmt == "WebP" and data[:4] != b"RIFF":
                continue
            return
    raise SourceError(f"{name} is not an image (its content is not PNG, JPEG, GIF, WebP, BMP or TIFF); "
                      "remove it or replace it with the page image")


def _read_page(path: Path) -> PageFile:
    if path.is_symlink():
        target = "a broken symbolic link" if not path.exists() else "a symbolic link"
        raise SourceError(f"{path} is {target}; copy the image itself into the chapter folder")
    size = path.stat().st_size
    if size > MAX_PAGE_BYTES:
        raise SourceError(f"{path} is {size / 2**20:.0f} MB; pages over {MAX_PAGE_BYTES // 2**20} MB cannot be "
                          "stored on GitHub. Shrink it or publish it by URL.")
    data = path.read_bytes()
    check_image(str(path), data)
    return PageFile(name=path.name, data=data)


def chapters_from_folder(folder: Path) -> list[Chapter]:
    images = _images(folder)
    subdirs = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: natural_key(p.name))
    if images:  # one chapter folder
        return [Chapter(series=folder.parent.name or "series", chapter=folder.name,
                        pages=[_read_page(p) for p in images])]
    chapters: list[Chapter] = []
    for sub in subdirs:
        sub_images = _images(sub)
        if sub_images:  # folder is a series: SERIES/CHAPTER
            chapters.append(Chapter(series=folder.name, chapter=sub.name, pages=[_read_page(p) for p in sub_images]))
        else:  # folder holds series: ROOT/SERIES/CHAPTER
            for chap in sorted((p for p in sub.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
                chap_images = _images(chap)
                if chap_images:
                    chapters.append(Chapter(series=sub.name, chapter=chap.name,
                                            pages=[_read_page(p) for p in chap_images]))
    if not chapters:
        raise SourceError(f"{folder} holds no page images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return chapters


def chapter_from_cbz(path: Path) -> Chapter:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/") and Path(n).suffix.lower() in IMAGE_SUFFIXES
                     and not Path(n).name.startswith(".")]
            names.sort(key=natural_key)
            pages = []
            seen = set()
            for n in names:
                info = zf.getinfo(n)
                if info.file_size > MAX_PAGE_BYTES:
                    raise SourceError(f"{path}: page {n} is over {MAX_PAGE_BYTES // 2**20} MB")
                name = Path(n).name
                if name in seen:
                    name = n.replace("/", "_")
                seen.add(name)
                data = zf.read(n)
                check_image(f"{path}: page {n}", data)
                pages.append(PageFile(name=name, data=data))
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{path} is not a valid .cbz (zip) file: {exc}") from exc
    if not pages:
        raise SourceError(f"{path} holds no page images")
    return Chapter(series=path.parent.name or "series", chapter=path.stem, pages=pages)


def _check_url(url: str, where: str) -> str:
    url = str(url).strip()
    if urlsplit(url).scheme not in ("http", "https"):
        raise SourceError(f"{where}: page URL {url!r} must start with http:// or https://")
    return url


def chapters_from_csv(path: Path) -> list[Chapter]:
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"series", "chapter", "page_url"} <= {f.strip() for f in reader.fieldnames}:
        raise SourceError(f"{path}: the header must be series,chapter,page_url")
    chapters: dict[tuple[str, str], Chapter] = {}
    for line_no, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        if not row["series"] or not row["chapter"]:
            raise SourceError(f"{path}:{line_no}: series and chapter must not be empty")
        url = _check_url(row["page_url"], f"{path}:{line_no}")
        key = (row["series"], row["chapter"])
        ch = chapters.setdefault(key, Chapter(series=key[0], chapter=key[1], pages=[]))
        ch.pages.append(PageFile(name=f"{len(ch.pages) + 1:04d}{Path(urlsplit(url).path).suffix[:6]}", url=url))
    return list(chapters.values())


def chapters_from_json(path: Path) -> list[Chapter]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a list of {{series, chapter, pages}} objects")
    chapters = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not item.get("series") or not item.get("chapter") \
                or not isinstance(item.get("pages"), list) or not item["pages"]:
            raise SourceError(f"{path}: entry {i} needs series, chapter and a non-empty pages list")
        pages = [PageFile(name=f"{n + 1:04d}{Path(urlsplit(str(u)).path).suffix[:6]}",
                          url=_check_url(u, f"{path} entry {i}")) for n, u in enumerate(item["pages"])]
        chapters.append(Chapter(series=str(item["series"]), chapter=str(item["chapter"]), pages=pages))
    return chapters


def read_source(source: Path) -> list[Chapter]:
    source = Path(source)
    if not source.exists():
        raise SourceError(f"{source} does not exist")
    if source.is_dir():
        return chapters_from_folder(source)
    suffix = source.suffix.lower()
    if suffix == ".cbz":
        return [chapter_from_cbz(source)]
    if suffix == ".csv":
        return chapters_from_csv(source)
    if suffix == ".json":
        return chapters_from_json(source)
    raise SourceError(f"{source}: publish takes chapter folders, .cbz files and .csv/.json URL manifests")


def build_orders(sources, *, now: float, engine: str | None = None, lang: str | None = None,
                 on_source=None) -> tuple[list[dict], dict[str, bytes]]:
    """Read every SOURCE into work orders (stable ids from series + chapter) and page files.

    ``on_source(path, chapters)`` is called after each source is read (for a progress bar).
    """
    from coordination.protocol.states import make_work_id
    from host_tools.admin import chapter_order

    orders: list[dict] = []
    files: dict[str, bytes] = {}
    for source in sources:
        chapters = read_source(Path(source))
        for chapter in chapters:
            if engine or lang:
                chapter.options = {k: v for k, v in (("engine", engine), ("lang", lang)) if v}
            work_id = make_work_id(chapter.series, chapter.chapter)
            order, chapter_files = chapter_order(chapter, work_id, now)
            orders.append(order)
            files.update(chapter_files)
        if on_source is not None:
            on_source(source, chapters)
    return orders, files
