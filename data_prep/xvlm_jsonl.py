"""The X-VLM reference's JSON-lines pre-training files -> shards (for users migrating from the reference).

    python -m data_prep.xvlm_jsonl --jsonl coco_part0.json coco_part1.json --source coco --out shards/coco
    python -m data_prep.xvlm_jsonl --jsonl vg_regions.json --images VG_ROOT --source vg_ref --out shards/vg_ref

One JSON object per line. The image is ``binary`` (base64 of the encoded image) or a path ``image_rpath`` (or
``image``), relative paths resolved against ``--images`` (default: the jsonl file's folder).
Image-text lines: ``{"caption": str | [str], image}``. Region lines: ``{"elems": [{"caption": str | [str],
"bb": [x, y, w, h], "attributes"?: str | [str]}], "caption"?: str | [str], image}``; each element becomes a region
(its attributes kept apart: training prefixes one to the text, "closed window"); boxes are in pixels of the image.
A line that is not valid JSON (or has no image) is skipped as ``bad_line``. Records keep the file/line order.

Image ids (training treats equal ids as the same image, e.g. as positives in the contrastive loss) name the image,
not the line, so they are unique per image across every file and equal for every line of one image:

- a path image: ``<source>/<path>`` with the resolved path relative to the id base: ``--images`` when given,
  otherwise the common parent folder of all the given jsonl files (so ``a/part-0.json`` and ``b/part-0.json``
  cannot collide); a path outside the base keeps its absolute form. Lines naming the same file share the id.
- a ``binary`` image: ``<source>/sha1-<first 16 hex digits of the SHA-1 of the decoded bytes>``, so the same bytes
  on several lines share the id and different images do not.

The ids are stable for a given command line (the same files, the same ``--images``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from data_prep import convert
from data_prep.samples import Raw, Skipped, as_list

SOURCE = "xvlm"
IMAGE_ID_SCHEME = "path-or-sha1"  # in the signature: shards made with the older per-line ids are not resumed
Item = tuple[str, str, int, int, str, str, str]  # (key, file, offset, length, image root, source, id base)


def id_base(files: list[str | Path], images: str | Path | None) -> str:
    """The folder image paths are made relative to in image ids: ``--images``, else the common parent folder of
    all ``files``."""
    if images:
        return os.path.abspath(images)
    return os.path.commonpath([os.path.abspath(Path(p).parent) for p in files]) if files else os.getcwd()


def image_id(source: str, image: str | bytes, base: str) -> str:
    """The id of one image: its path relative to ``base`` (``/``-separated; absolute when outside ``base``), or
    ``sha1-<16 hex>`` of its bytes (see the module docstring)."""
    if isinstance(image, bytes):
        return f"{source}/sha1-{hashlib.sha1(image).hexdigest()[:16]}"
    full = os.path.normpath(os.path.abspath(image))
    try:
        rel = os.path.relpath(full, base)
    except ValueError:  # another drive (Windows)
        rel = full
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        rel = full
    return f"{source}/{Path(rel).as_posix().lstrip('/')}"


def line_items(files: list[str | Path], images: str | None, source: str) -> Iterator[Item]:
    """One record per non-blank line, located by byte offset (the workers read and decode the lines)."""
    for path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"jsonl file not found: {path}")
    base = id_base(files, images)
    for file_index, path in enumerate(files):
        root = str(images or Path(path).parent)
        with open(path, "rb") as fp:
            offset = 0
            for line_no, line in enumerate(fp):
                if line.strip():
                    yield f"{file_index:03d}-{line_no:09d}", str(path), offset, len(line), root, source, base
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
    key, path, offset, length, root, source, base = item
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
    return Raw(key=key, image_id=image_id(source, image, base), image=image, captions=as_list(ann.get("caption")),
               regions=regions)


def convert_jsonl(files: list[str], out: str | Path, images: str | None = None, source: str = SOURCE, **kw) -> dict:
    """Convert reference jsonl files; ``kw`` are further :class:`data_prep.convert.Options` fields."""
    convert.require_dir(images)
    folders = ", ".join(dict.fromkeys(str(Path(p).parent) for p in files))
    args = {"jsonl": [Path(p).name for p in files], "image_ids": IMAGE_ID_SCHEME}
    opts = convert.Options(out=Path(out), source=source, args=args,
                           image_root=str(images) if images else f"each jsonl file's folder ({folders})", **kw)
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
