"""COCO -> shards: captions (COCO 2014/2017 caption files or the Karpathy json) and objects (instances files).

    python -m data_prep.coco --images COCO_ROOT --karpathy dataset_coco.json \\
        --captions captions_train2014.json captions_val2014.json \\
        --instances instances_train2014.json instances_val2014.json --out shards/coco

Images are looked up as ``COCO_ROOT/<file_name>``, ``COCO_ROOT/{train,val}{2014,2017}/<file_name>`` or the
Karpathy ``filepath/filename``. The images of the Karpathy **test and val** splits are left out (counted as
``karpathy_eval``) so pre-training never sees the retrieval/captioning evaluation images; pass
``--include-karpathy-eval`` to keep them (then ``--karpathy`` is optional). Without ``--captions`` the captions come
from the Karpathy file's raw sentences. Records are sorted by COCO image id.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep import convert
from data_prep.cocostyle import CocoStyle, image_candidates, read_coco_style
from data_prep.jsonstream import iter_object
from data_prep.samples import Raw

SOURCE = "coco"
EVAL_SPLITS = ("val", "test")
SUBDIRS = ("train2014", "val2014", "train2017", "val2017", "test2014", "test2015", "test2017", "images")


def read_karpathy(path: str | Path, with_captions: bool) -> dict[int, dict[str, Any]]:
    """``cocoid -> {"split", "file", "captions"}`` from Karpathy's ``dataset_coco.json`` (streamed)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"Karpathy split file not found: {path}")
    out: dict[int, dict[str, Any]] = {}
    for key, value in iter_object(path, stream={"images"}):
        if key != "images":
            continue
        for entry in value:
            file = str(Path(entry.get("filepath", "")) / entry["filename"]) if entry.get("filename") else None
            captions = [s.get("raw", "") for s in entry.get("sentences", [])] if with_captions else []
            out[int(entry["cocoid"])] = {"split": entry["split"], "file": file, "captions": captions}
    return out


def eval_image_ids(path: str | Path) -> set[int]:
    """COCO ids of the Karpathy test and val images."""
    return {i for i, e in read_karpathy(path, with_captions=False).items() if e["split"] in EVAL_SPLITS}


def _records(data: CocoStyle, karpathy: dict[int, dict], root: Path, ids: list[int]) -> Iterator[Raw]:
    """Raw records of ``ids``, built lazily."""
    for image_id in ids:
        key = f"{image_id:012d}"
        kp = karpathy.get(image_id, {})
        info = data.images.get(image_id)
        names = ([*info.file_names] if info else []) + ([kp["file"]] if kp.get("file") else [])
        if not names:
            names = [f"COCO_train2014_{key}.jpg", f"COCO_val2014_{key}.jpg", f"{key}.jpg"]
        frame = (info.width, info.height) if info and info.width and info.height else None
        captions = data.captions.get(image_id) or kp.get("captions", [])
        yield Raw(key=key, image_id=f"{SOURCE}/{image_id}", image=tuple(image_candidates(root, names, SUBDIRS)),
                  captions=list(captions), objects=data.objects(image_id), frame=frame)


def convert_coco(images: str | Path, out: str | Path, captions: list[str] = (), instances: list[str] = (),
                 karpathy: str | None = None, include_karpathy_eval: bool = False, **kw) -> dict[str, Any]:
    """Convert COCO; ``kw`` are further :class:`data_prep.convert.Options` fields. Returns the manifest."""
    convert.require_dir(images)
    if not (captions or instances or karpathy):
        raise convert.ConvertError("give --captions, --instances and/or --karpathy")
    if karpathy is None and not include_karpathy_eval:
        raise convert.ConvertError("pass --karpathy dataset_coco.json so its test/val images stay out of the "
                                   "pre-training shards, or --include-karpathy-eval to keep them")
    data = read_coco_style([*captions, *instances])
    split = read_karpathy(karpathy, with_captions=not captions) if karpathy else {}
    args = {"captions": [Path(p).name for p in captions], "instances": [Path(p).name for p in instances],
            "karpathy": Path(karpathy).name if karpathy else None, "include_karpathy_eval": include_karpathy_eval}
    opts = convert.Options(out=Path(out), source=kw.pop("source", SOURCE), args=args, image_root=str(images), **kw)
    skipped, dropped = convert.Tally(), convert.Tally()
    if data.bad_annotations:
        dropped.add("bad_annotation", "annotation files", data.bad_annotations)
    ids = []
    for image_id in sorted(set(data.captions) | set(data.boxes) | (set(split) if not captions else set())):
        if not include_karpathy_eval and split.get(image_id, {}).get("split") in EVAL_SPLITS:
            skipped.add("karpathy_eval", f"{image_id:012d}")
        else:
            ids.append(image_id)
    records = _records(data, split, Path(images), ids)
    return convert.run(records, convert.identity, opts, total=len(ids), pre_skipped=skipped, pre_dropped=dropped)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.coco", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--images", required=True, type=Path, help="COCO image root")
    parser.add_argument("--captions", nargs="*", default=[], help="captions_{train,val}{2014,2017}.json files")
    parser.add_argument("--instances", nargs="*", default=[], help="instances_{train,val}{2014,2017}.json files")
    parser.add_argument("--karpathy", help="Karpathy dataset_coco.json (test/val images are excluded)")
    parser.add_argument("--include-karpathy-eval", action="store_true",
                        help="keep the Karpathy test/val images (leaks retrieval/captioning evaluation images)")
    convert.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> tuple[dict, Path]:
    kw = convert.common_kwargs(a)
    return convert_coco(a.images, kw.pop("out"), a.captions, a.instances, a.karpathy, a.include_karpathy_eval,
                        **kw), a.out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.coco``."""
    return convert.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
