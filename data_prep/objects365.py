"""Objects365 -> object-only shards (boxes with category names) from its COCO-style annotation files.

    python -m data_prep.objects365 --annotations zhiyuan_objv2_train.json --images O365_ROOT --out shards/objects365

The annotation files (``{"images", "annotations", "categories"}``, boxes ``[x, y, w, h]`` in pixels) are streamed
and only the boxes are kept in memory, packed. Images are looked up as ``O365_ROOT/<file_name>``, then
``O365_ROOT/{images,train,val}/<file_name>``, then the same with the file name's leading ``images/vN/`` stripped
(the annotations say ``images/v1/patch8/objects365_v1_00420917.jpg`` or ``images/v2/patch16/...``, while the
released archives unpack to ``train/patch8/...`` and ``val/patch16/...``), then with the file name's basename.
``--images`` must exist. Images listed without any box are counted as ``no_annotations``. Records are sorted by
image id.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from data_prep import convert
from data_prep.cocostyle import image_candidates, read_coco_style
from data_prep.samples import Raw

SOURCE = "objects365"
SUBDIRS = ("images", "train", "val")


def convert_objects365(annotations: list[str], images: str | Path, out: str | Path, source: str = SOURCE,
                       **kw) -> dict:
    """Convert Objects365; ``kw`` are further :class:`data_prep.convert.Options` fields. Returns the manifest."""
    convert.require_dir(images)
    data = read_coco_style(annotations)
    opts = convert.Options(out=Path(out), source=source, args={"annotations": [Path(p).name for p in annotations]},
                           image_root=str(images), **kw)
    skipped, dropped, root = convert.Tally(), convert.Tally(), Path(images)
    if data.bad_annotations:
        dropped.add("bad_annotation", "annotation files", data.bad_annotations)
    ids = sorted(set(data.images) | set(data.boxes))

    def records() -> Iterator[Raw]:  # built lazily: a million images' object dicts would not fit comfortably
        for image_id in ids:
            key, info = str(image_id), data.images.get(image_id)
            if image_id not in data.boxes:
                skipped.add("no_annotations", key)
                continue
            names = info.file_names if info and info.file_names else [f"{image_id}.jpg"]
            frame = (info.width, info.height) if info and info.width and info.height else None
            yield Raw(key=key, image_id=f"{source}/{image_id}", image=tuple(image_candidates(root, names, SUBDIRS)),
                      objects=data.objects(image_id), frame=frame)

    return convert.run(records(), convert.identity, opts, total=len(data.boxes), pre_skipped=skipped,
                       pre_dropped=dropped)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.objects365", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--annotations", nargs="+", required=True, help="COCO-style annotation json file(s)")
    parser.add_argument("--images", required=True, type=Path, help="Objects365 image root")
    parser.add_argument("--source", default=SOURCE, help=f"source name (default {SOURCE})")
    convert.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> tuple[dict, Path]:
    kw = convert.common_kwargs(a)
    return convert_objects365(a.annotations, a.images, kw.pop("out"), a.source, **kw), a.out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.objects365``."""
    return convert.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
