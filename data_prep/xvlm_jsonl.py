"""The X-VLM reference's JSON-lines pre-training files -> shards (for users migrating from the reference).

    python -m data_prep.xvlm_jsonl --jsonl coco_part0.json coco_part1.json --source coco --out shards/coco
    python -m data_prep.xvlm_jsonl --jsonl vg_regions.json --images VG_ROOT --source vg_ref --out shards/vg_ref

One JSON object per line. The image is ``binary`` (base64 of the encoded image) or a path ``image_rpath`` (or
``image``), relative paths resolved against ``--images`` (default: the jsonl file's folder).
Image-text lines: ``{"caption": str | [str], image}``. Region lines: ``{"elems": [{"caption": str | [str],
"bb": [x, y, w, h], "attributes"?: str | [str]}], "caption"?: str | [str], image}``; each element becomes a region
(its attributes kept apart: training prefixes one to the text, "closed window"); boxes are in pixels of the image.
A line that is not valid JSON (or has no image) is skipped as ``bad_line``. Records keep the file/line order.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
from collections.abc import Iterator
from pathlib import Path

from data_prep import convert
from data_prep.samples import Raw, Skipped, as_list

SOURCE = "xvlm"
Item = tuple[str, str, int, int, str, str]  # (key, file, offset, length, image root, source)


def line_items(files: list[str | Path], images: str | None, source: str) -> Iterator[Item]:
    """One record per non-blank line, located by byte offset (the workers read and decode the lines)."""
    for file_index, path in enumerate(files):
        if not Path(path).is_file():
            raise FileNotFoundError(f"jsonl file not found: {path}")
        root = str(images or Path(path).parent)
        with open(path, "rb") as fp:
            offset = 0
            for line_no, line in enumerate(fp):
                if line.strip():
                    yield f"{file_index:03d}-{line_no:09d}", str(path), offset, len(line), root, source
                offset += len(line)


def _image(ann: dict, root: str) -> str | bytes | None:
    if ann.get("binary"):
        return base64.b64decode(ann["binary"], validate=False)
    path = ann.get("image_rpath") or ann.get("image")
    if not isinstance(path, str) or not path:
        return None
    return path if os.path.isabs(path) else os.path.join(root, path)


def to_raw(item: Item) -> Raw | Skipped:
    """Read and decode one line (in a worker)."""
    key, path, offset, length, root, source = item
    with open(path, "rb") as fp:
        fp.seek(offset)
        line = fp.read(length)
    try:
        ann = json.loads(line)
        image = _image(ann, root) if isinstance(ann, dict) else None
    except (ValueError, binascii.Error):
        return Skipped(key, "bad_line")
    if image is None:
        return Skipped(key, "bad_line")
    regions = [{"bbox": e.get("bb"), "captions": as_list(e.get("caption")), "attributes": as_list(e.get("attributes"))}
               for e in ann.get("elems") or [] if isinstance(e, dict)]
    image_id = f"{source}/{Path(path).stem}/{int(key.split('-')[1])}"
    return Raw(key=key, image_id=image_id, image=image, captions=as_list(ann.get("caption")), regions=regions)


def convert_jsonl(files: list[str], out: str | Path, images: str | None = None, source: str = SOURCE, **kw) -> dict:
    """Convert reference jsonl files; ``kw`` are further :class:`data_prep.convert.Options` fields."""
    opts = convert.Options(out=Path(out), source=source, args={"jsonl": [Path(p).name for p in files]}, **kw)
    return convert.run(line_items(files, images, source), to_raw, opts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.xvlm_jsonl", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--jsonl", nargs="+", required=True, help="reference JSON-lines file(s)")
    parser.add_argument("--images", help="root of relative image_rpath values (default: each file's folder)")
    parser.add_argument("--source", default=SOURCE, help=f"source name: shard prefix and image ids (default {SOURCE})")
    convert.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> tuple[dict, Path]:
    kw = convert.common_kwargs(a)
    return convert_jsonl(a.jsonl, kw.pop("out"), a.images, a.source, **kw), a.out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.xvlm_jsonl``."""
    return convert.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
