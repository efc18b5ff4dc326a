"""How mokuro and its web reader load a folder of volumes, rewritten from their code for the tests.

mokuro itself is not installed (it pulls in torch); these functions follow its rules:

- mokuro 0.2 (https://github.com/kha-white/mokuro): `mokuro/volume.py` (commit 483c1ab:
  `get_path_mokuro`, `Volume.path_ocr_cache`, `get_img_paths`, `get_json_paths`, `Title.set_uuid`,
  `VolumeStatus`) and `mokuro/mokuro_generator.py` (`generate_mokuro_file`): a volume is a folder
  `TITLE/VOLUME/` of images (.jpg .jpeg .png .webp .avif), its `.mokuro` is `TITLE/VOLUME.mokuro`
  and its per-page OCR is `TITLE/_ocr/VOLUME/<image path>.json`; a volume with a `.mokuro`
  is "already processed". `generate_mokuro_file` rebuilds the `.mokuro` pages from the OCR
  files and images, paired by path without extension, both in natsort order.
- the web reader (https://github.com/ZXY101/mokuro-reader) `src/lib/upload/index.ts` (commit
  b060675: `getDetails`, `removeExtension`, `processFiles`, `processStandaloneImage`,
  `processMokuroWithPendingImages`, `uploadVolumeData`): given the files of a dropped folder,
  images are grouped by their folder, then each `.mokuro` file takes the first group whose
  path starts with its own path without extension; a volume is added to the catalog when
  it has exactly as many images as pages (keyed by file name), else it fails to import.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

MOKURO_IMAGES = (".jpg", ".jpeg", ".png", ".webp", ".avif")
READER_IMAGES = ("jpg", "jpeg", "png", "webp", "avif", "tif", "tiff", "gif", "bmp", "jxl")


def natsort_key(path) -> list:
    """natsort's default key: digit runs compare as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(path)) if p]


# ------------------------------------------------------------------ mokuro 0.2
def mokuro_titles(parent: Path) -> dict:
    """{title folder: {"uuid": title uuid, "volumes": {volume name: rebuilt .mokuro}}} as mokuro sees them.

    Raises AssertionError where mokuro would fail or warn."""
    titles = {}
    for title in sorted(p for p in parent.iterdir() if p.is_dir() and p.stem != "_ocr"):
        mokuros = sorted(title.glob("*.mokuro"))
        if not mokuros:
            continue
        uuids = {json.loads(p.read_text(encoding="utf-8")).get("title_uuid") for p in mokuros}
        assert len(uuids) == 1, f"mokuro: Incosistent title uuids in {title}"  # Title.set_uuid warns
        volumes = {}
        for vol_dir in sorted(p for p in title.iterdir() if p.is_dir() and p.name != "_ocr"):
            path_mokuro = vol_dir.parent / (vol_dir.name + ".mokuro")  # get_path_mokuro
            assert path_mokuro.is_file(), f"mokuro would OCR {vol_dir} again: no {path_mokuro.name}"
            ocr_cache = path_mokuro.parent / "_ocr" / path_mokuro.stem  # Volume.path_ocr_cache
            json_paths = sorted((p.relative_to(ocr_cache) for p in ocr_cache.glob("**/*.json")), key=natsort_key)
            json_paths = {p.with_suffix(""): p for p in json_paths}
            img_paths = sorted((p.relative_to(vol_dir) for p in vol_dir.glob("**/*")
                                if p.is_file() and p.suffix.lower() in MOKURO_IMAGES), key=natsort_key)
            img_paths = {p.with_suffix(""): p for p in img_paths}
            data = json.loads(path_mokuro.read_text(encoding="utf-8"))
            pages = []
            for key, json_rel in json_paths.items():  # generate_mokuro_file
                assert key in img_paths, f"mokuro: no image for {ocr_cache / json_rel}"
                page = json.loads((ocr_cache / json_rel).read_text(encoding="utf-8"))
                page["img_path"] = str(img_paths[key]).replace("\\", "/")
                pages.append(page)
            volumes[path_mokuro.stem] = {**data, "pages": pages}
            assert data == volumes[path_mokuro.stem], f"{path_mokuro} differs from what mokuro rebuilds"
        titles[title.name] = {"uuid": uuids.pop(), "volumes": volumes}
    return titles


# ------------------------------------------------------------------ the web reader
def _details(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    return ".".join(rel.split(".")[:-1]) if "." in name else rel  # getDetails: path without extension


def _remove_extension(path: str) -> str:
    dot = path.rfind(".")
    return path[:dot] if dot > -1 and dot > path.rfind("/") else path


def reader_import(dropped: Path) -> tuple[dict, list]:
    """Drop the folder ``dropped`` on the reader: ({volume_uuid: volume}, [failed volume paths])."""
    files = [(str(p.relative_to(dropped.parent)).replace("\\", "/"), p) for p in dropped.rglob("*") if p.is_file()]
    files.sort(key=lambda f: (f[0].endswith(".mokuro"), natsort_key(f[1].name)))  # images first, .mokuro last
    pending: dict[str, dict[str, Path]] = {}
    volumes_data: dict[str, dict] = {}
    catalog: dict[str, dict] = {}
    for rel, path in files:
        ext = path.name.rsplit(".", 1)[-1].lower() if "." in path.name else ""
        details = _details(rel)
        if ext == "mokuro":
            key = _remove_extension(details)
            data = json.loads(path.read_text(encoding="utf-8"))
            meta = {"series_title": data["title"] or data["volume"], "series_uuid": data["title_uuid"],
                    "volume_title": data["volume"], "volume_uuid": data["volume_uuid"],
                    "mokuro_version": data["version"], "page_count": len(data["pages"])}
            group = next((k for k in pending if k.startswith(key)), None)
            files_of = pending.pop(group) if group is not None else {}
            if group is not None and len(data["pages"]) == len(files_of):
                assert all(meta.values()), f"{rel}: the reader refuses a volume without {meta}"
                catalog.setdefault(meta["volume_uuid"], {**meta, "pages": data["pages"], "files": files_of})
            else:
                volumes_data[key] = {"pages": data["pages"], "files": files_of}
        elif ext in READER_IMAGES:
            assert not any(details.startswith(k) for k in volumes_data)  # images come before .mokuro files
            folder = details.rsplit("/", 1)[0]
            pending.setdefault(folder, {})[path.name] = path
    return catalog, sorted(volumes_data) + sorted(pending)
