"""Command line: try OCR on page images.

Example::

    python -m pipelines ocr page1.png page2.jpg --format json --jobs 2
"""
from __future__ import annotations

import json
import sys

import click

from pipelines.exceptions import OcrError
from pipelines.engines import ENGINES


@click.group()
def cli() -> None:
    """wms pipelines: OCR of manga pages."""


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--engine", type=click.Choice(ENGINES), default="rapidocr", show_default=True,
              help="OCR engine.")
@click.option("--lang", type=click.Choice(["auto", "jpn", "eng"]), default="auto", show_default=True,
              help="Page language; auto decides per page.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: each page's text; json: JSON Lines, one mokuro-compatible object per image.")
@click.option("--jobs", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Pages processed in parallel; the cores are split between them.")
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default=None,
              help="Text-line detector (both engines use RapidOCR's): int8 (default, about 4x faster) or fp32 (the float model). "
                   "Default: $WMS_OCR_PRECISION, else int8.")
def ocr(images: tuple[str, ...], engine: str, lang: str, fmt: str, jobs: int, precision: str | None) -> None:
    """OCR IMAGES (files or http(s) URLs) and print their text in reading order.

    Example: python -m pipelines ocr page.png --format json
    """
    from pipelines.ocr import OcrPipeline
    from pipelines.pages import PageImage, decode_image, fetch_url, load_file

    def loader(src: str):
        def load() -> PageImage:
            if "://" in src:  # http(s) is fetched; any other scheme is refused by fetch_url
                return PageImage(src, decode_image(fetch_url(src, src), src))
            return load_file(src)
        return load

    try:
        kw = {"precision": precision} if precision else {}
        pipeline = OcrPipeline(engine, lang, jobs=jobs, **kw)
    except OcrError as exc:
        raise click.ClickException(str(exc)) from None
    failed = 0
    try:
        for src, result in zip(images, pipeline.read_many([loader(s) for s in images])):
            if isinstance(result, OcrError):
                failed += 1
                click.echo(f"Error: {result}", err=True)
                continue
            if fmt == "json":
                obj = {"image": src, "img_width": result["img_width"], "img_height": result["img_height"],
                       "blocks": result["blocks"], "text": result["text"]}
                click.echo(json.dumps(obj, ensure_ascii=False))
            else:
                if len(images) > 1:
                    click.echo(f"== {src}")
                click.echo(result["text"])
            sys.stdout.flush()
    finally:
        pipeline.close()
    if failed:
        raise click.ClickException(f"{failed} of {len(images)} images failed")


def main() -> None:
    cli(prog_name="python -m pipelines")


if __name__ == "__main__":
    main()
