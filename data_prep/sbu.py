"""SBU Captions -> caption-only shards (the ``cc`` converter with source ``sbu``, plus SBU's own two-file list).

    python -m data_prep.sbu --urls SBU_captioned_photo_dataset_urls.txt \\
        --captions SBU_captioned_photo_dataset_captions.txt --images SBU_ROOT --out shards/sbu
    python -m data_prep.sbu --img2dataset sbu_img2dataset/ --out shards/sbu
    python -m data_prep.sbu --list sbu-captions-all.json --images SBU_ROOT --out shards/sbu
    python -m data_prep.sbu --list sbu.tsv --images SBU_ROOT --out shards/sbu

With ``--urls``/``--captions`` (the published SBU files, one url / caption per line, same order), each image is
looked up as ``SBU_ROOT/<basename of its url>`` (how ``wget``-style downloads name files). Both files are read as
bytes and decoded line by line as UTF-8, falling back to Latin-1 for a line that is not valid UTF-8 (so a
Latin-1 byte 0xe0 reads "à", not U+FFFD). ``--list`` also reads the single-file release ``sbu-captions-all.json``
(one object of parallel arrays ``{"image_urls": [...], "captions": [...], "user_ids": [...]}``; image =
``SBU_ROOT/<basename of its url>``). ``--list`` and ``--img2dataset`` work as in ``python -m data_prep.cc``.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from pathlib import Path

from data_prep import cc, convert
from data_prep.captionlists import text_lines, url_basename

SOURCE = "sbu"


def sbu_items(urls: str | Path, captions: str | Path, images: str | Path, source: str = SOURCE) -> Iterator[cc.Item]:
    """Records of SBU's parallel url / caption files (line ``i`` of one goes with line ``i`` of the other)."""
    for path in (urls, captions):
        if not Path(path).is_file():
            raise FileNotFoundError(f"file not found: {path}")
    root = Path(images)
    for index, (url, caption) in enumerate(itertools.zip_longest(text_lines(urls), text_lines(captions))):
        if url is None or caption is None:
            raise convert.ConvertError(f"{urls} and {captions} have different numbers of lines "
                                       f"(one ends at line {index + 1})")
        name = url_basename(url)
        key = f"{index:09d}"
        yield key, f"{source}/{key}", ("file", str(root / name) if name else f"{root}/<no url>"), caption.strip()


def convert_sbu(out: str | Path, urls: str, captions: str, images: str, source: str = SOURCE, **kw) -> dict:
    """Convert SBU's url/caption files; ``kw`` are further Options fields. Returns the manifest."""
    convert.require_dir(images)
    args = {"urls": Path(urls).name, "captions": Path(captions).name}
    opts = convert.Options(out=Path(out), source=source, args=args, image_root=str(images), **kw)
    return convert.run(sbu_items(urls, captions, images, source), cc.to_raw, opts)


def build_parser() -> argparse.ArgumentParser:
    parser = cc.build_parser(SOURCE, "python -m data_prep.sbu", __doc__)
    parser.add_argument("--urls", help="SBU_captioned_photo_dataset_urls.txt")
    parser.add_argument("--captions", help="SBU_captioned_photo_dataset_captions.txt")
    return parser


def _convert(a: argparse.Namespace) -> tuple[dict, Path]:
    if a.urls or a.captions:
        if not (a.urls and a.captions and a.images):
            raise convert.ConvertError("--urls needs --captions and --images")
        kw = convert.common_kwargs(a)
        return convert_sbu(kw.pop("out"), a.urls, a.captions, a.images, a.source, **kw), a.out
    return cc.convert_args(a)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.sbu``."""
    return convert.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
