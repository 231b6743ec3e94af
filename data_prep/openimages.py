"""Open Images -> object-only shards from the box CSVs and the class description table.

    python -m data_prep.openimages --boxes oidv6-train-annotations-bbox.csv \\
        --classes oidv7-class-descriptions-boxable.csv --images OI_ROOT --out shards/openimages

``--boxes`` CSVs have a header with ``ImageID, LabelName, XMin, XMax, YMin, YMax`` (normalised to [0, 1]) and
optionally ``Confidence`` (rows with confidence 0 are negatives: counted as ``negative_label``). ``--classes`` maps
``LabelName`` to ``DisplayName`` (with or without that header row). Rows are streamed and grouped by consecutive
``ImageID`` (the published files are sorted by it; an ImageID that reappears later stops the run with an error).
Images are looked up as ``OI_ROOT/<ImageID>.jpg`` or ``OI_ROOT/{train,validation,test}/<ImageID>.jpg``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
from collections.abc import Iterator
from pathlib import Path

from data_prep import convert
from data_prep.samples import Raw

SOURCE = "openimages"
SUBDIRS = (".", "train", "validation", "test", "images")
REQUIRED = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")


def read_classes(path: str | Path) -> dict[str, str]:
    """``LabelName -> DisplayName`` from a class description CSV."""
    with open(path, newline="", encoding="utf-8") as fp:
        rows = [r for r in csv.reader(fp) if len(r) >= 2]
    if rows and rows[0][:2] == ["LabelName", "DisplayName"]:
        rows = rows[1:]
    return {r[0]: r[1] for r in rows}


def _box(row: dict) -> list[float] | None:
    try:
        x1, x2, y1, y2 = (float(row[k]) for k in ("XMin", "XMax", "YMin", "YMax"))
    except (TypeError, ValueError):
        return None
    return [x1, y1, x2 - x1, y2 - y1]


def _rows(paths: list[str | Path]) -> Iterator[dict]:
    for path in paths:
        with open(path, newline="", encoding="utf-8") as fp:
            reader = csv.DictReader(fp)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise convert.ConvertError(f"{path}: missing columns {missing} (header: {reader.fieldnames})")
            yield from reader


def records(boxes: list[str | Path], classes: dict[str, str], images: Path, source: str,
            dropped: convert.Tally) -> Iterator[Raw]:
    """One Raw per image of the box CSVs, in file order (boxes normalised: frame (1, 1))."""
    seen: set[str] = set()
    for image_id, rows in itertools.groupby(_rows(boxes), key=lambda r: r["ImageID"]):
        if image_id in seen:
            raise convert.ConvertError(f"ImageID {image_id} appears in two separate runs of rows: the box CSVs must "
                                       f"be sorted by ImageID (e.g. sort -t, -k1,1 with the header kept first)")
        seen.add(image_id)
        key, objects = convert.safe_key(image_id), []
        for row in rows:
            if (row.get("Confidence") or "1").strip() in ("0", "0.0"):
                dropped.add("negative_label", key)
            elif row["LabelName"] not in classes:
                dropped.add("unknown_label", key)
            else:
                objects.append({"bbox": _box(row), "label": classes[row["LabelName"]]})
        candidates = tuple(str(images / d / f"{image_id}.jpg") for d in SUBDIRS)
        yield Raw(key=key, image_id=f"{source}/{image_id}", image=tuple(dict.fromkeys(candidates)), objects=objects,
                  frame=(1.0, 1.0))


def convert_openimages(boxes: list[str], classes: str, images: str | Path, out: str | Path, source: str = SOURCE,
                       **kw) -> dict:
    """Convert Open Images boxes; ``kw`` are further :class:`data_prep.convert.Options` fields."""
    convert.require_dir(images)
    for path in (*boxes, classes):
        if not Path(path).is_file():
            raise FileNotFoundError(f"file not found: {path}")
    names = read_classes(classes)
    args = {"boxes": [Path(p).name for p in boxes], "classes": Path(classes).name}
    opts = convert.Options(out=Path(out), source=source, args=args, image_root=str(images), **kw)
    dropped = convert.Tally()
    return convert.run(records(boxes, names, Path(images), source, dropped), convert.identity, opts,
                       pre_dropped=dropped)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.openimages", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--boxes", nargs="+", required=True, help="box annotation CSV file(s)")
    parser.add_argument("--classes", required=True, help="class description CSV (LabelName,DisplayName)")
    parser.add_argument("--images", required=True, type=Path, help="Open Images image root")
    parser.add_argument("--source", default=SOURCE, help=f"source name (default {SOURCE})")
    convert.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> tuple[dict, Path]:
    kw = convert.common_kwargs(a)
    return convert_openimages(a.boxes, a.classes, a.images, kw.pop("out"), a.source, **kw), a.out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.openimages``."""
    return convert.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
