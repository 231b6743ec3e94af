"""COCO captioning (Karpathy's ``dataset_coco.json``, or the X-VLM/BLIP release's ``coco_karpathy_*.json``) ->
caption task files, with the val/test ground truth in COCO caption format for pycocoevalcap.

    python -m data_prep.coco_caption --karpathy dataset_coco.json --images COCO_ROOT --out OUT
    python -m data_prep.coco_caption --xvlm coco_karpathy_train.json --xvlm coco_karpathy_val.json \\
        --xvlm coco_karpathy_test.json --images COCO_ROOT --out OUT

Inputs:

- Karpathy's ``{"images": [{"filepath", "filename", "split": "train"|"restval"|"val"|"test", "sentences":
  [{"raw", "tokens", ...}], "cocoid"}], "dataset": "coco"}`` (streamed; read as :mod:`data_prep.karpathy` does:
  restval goes into train, captions are the ``raw`` sentences).
- X-VLM's ``coco_karpathy_train.json`` ``[{"caption": str, "image": "val2014/COCO_val2014_...jpg", "image_id"}]``
  (one caption per entry) and ``coco_karpathy_{val,test}.json`` ``[{"image", "caption": [str, ...]}]``
  (``--xvlm [SPLIT=]FILE``; the split from the file name); entries are grouped per image, as
  :mod:`data_prep.xvlm_finetune` does for retrieval.

One line per image, in input order: ``{"image", "image_id": "coco/<cocoid>", "width", "height", "captions"}`` into
``train.jsonl``, ``val.jsonl``, ``test.jsonl``; and for every split but train ``<split>_gt.json``: ``{"images":
[{"id": cocoid}], "annotations": [{"image_id": cocoid, "id": n, "caption": str}], "type": "captions", "info": {},
"licenses": []}`` (what ``pycocotools.coco.COCO`` loads), holding exactly the images and captions of that split's
lines (``id`` numbers the captions of the file from 1). The id in the ground truth is the number after ``coco/`` in
the line's ``image_id`` (a string when it is not a number).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from data_prep import finetune_common as fc
from data_prep import karpathy, xvlm_finetune
from data_prep.convert import ConvertError
from data_prep.jsonstream import iter_object

SPLITS = ("train", "val", "test")
_NAMED = re.compile(r"^([A-Za-z0-9_]+)=(.+)$")


def gt_name(split: str) -> str:
    return f"{split}_gt.json"


def gt_id(image_id: str) -> int | str:
    """``coco/391895`` -> 391895 (the COCO image id); a non-numeric id stays the string after the source."""
    tail = image_id.split("/", 1)[-1]
    return int(tail) if tail.isdigit() else tail


class KarpathyReader:
    """Streams the image entries of a Karpathy split file as items; counts what it read."""

    def __init__(self, path: Path, source: str):
        self.path, self.source, self.records = path, source, 0

    def __iter__(self) -> Iterator[fc.Item | fc.Skip]:
        found = False
        with closing(fc.guarded(iter_object(self.path, stream={"images"}), self.path)) as members:
            for key, value in members:
                if key != "images":
                    continue
                if not isinstance(value, Iterator):
                    raise ConvertError(f"{self.path}: 'images' is a {type(value).__name__}, not an array: is it "
                                       f"Karpathy's dataset_coco.json?")
                found = True
                for index, entry in enumerate(fc.guarded(value, self.path)):
                    self.records += 1
                    yield karpathy.entry_item(self.source, index, entry)
        if not found:
            raise ConvertError(f"{self.path} has no 'images' array: is it Karpathy's dataset_coco.json?")


def xvlm_split(path: Path) -> str:
    stem = path.stem.lower()
    for split in ("train", "val", "test"):
        if split in stem:
            return split
    raise ConvertError(f"cannot tell the split of {path} from its name: give it as --xvlm SPLIT={path}")


def parse_xvlm(values: list[str]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for value in values:
        named = _NAMED.match(value)
        if named and not Path(value).is_file():
            name, file = named.groups()
            pair = (name, fc.require_file(file, f"--xvlm {name}="))
        else:
            path = fc.require_file(value, "--xvlm")
            pair = (xvlm_split(path), path)
        if pair[0] in (n for n, _ in out):
            raise ConvertError(f"split {pair[0]} is given twice ({pair[1].name}); name them --xvlm SPLIT=FILE")
        out.append(pair)
    return out


class GroundTruth:
    """Collects the captions of the lines of every split but train, in COCO caption format."""

    def __init__(self, splits: list[str]):
        self.data = {s: {"images": [], "annotations": []} for s in splits if s != "train"}

    def __call__(self, split: str, line: dict[str, Any]) -> None:
        gt = self.data.get(split)
        if gt is None:
            return
        ident = gt_id(line["image_id"])
        gt["images"].append({"id": ident})
        for caption in line["captions"]:
            gt["annotations"].append({"image_id": ident, "id": len(gt["annotations"]) + 1, "caption": caption})

    def finish(self, manifest: dict[str, Any]) -> dict[str, str]:
        files, info = {}, {}
        for split, gt in self.data.items():
            data = {"images": gt["images"], "annotations": gt["annotations"], "type": "captions", "info": {},
                    "licenses": []}
            files[gt_name(split)] = json.dumps(data, ensure_ascii=False) + "\n"
            info[split] = {"file": gt_name(split), "images": len(gt["images"]),
                           "annotations": len(gt["annotations"])}
        manifest["gt"] = info
        return files


HINTS = {"bad_record": "the entries do not have the layout of this option's files (Karpathy's dataset_coco.json "
                       "for --karpathy, X-VLM's coco_karpathy_*.json for --xvlm)"}


def convert_coco_caption(images: str | Path, out: str | Path, karpathy_file: str | Path | None = None,
                         xvlm: list[str] = (), source: str | None = None, overwrite: bool = False, workers: int = 4,
                         progress: bool = True) -> dict[str, Any]:
    """Convert Karpathy's or X-VLM's COCO caption files; returns the manifest."""
    root = fc.require_dir(images)
    if (karpathy_file is None) == (not xvlm):
        raise ConvertError("give either --karpathy dataset_coco.json or --xvlm files (coco_karpathy_*.json)")
    if karpathy_file is not None:
        path = fc.require_file(karpathy_file, "--karpathy")
        if source is not None and source not in karpathy.SOURCES:
            raise ConvertError(f"--source {source!r}: one of {', '.join(karpathy.SOURCES)}")
        source = source or karpathy.detect_source(path)
        splits, args = list(SPLITS), {"karpathy": path.name}
        reader: Any = KarpathyReader(path, source)
    else:
        pairs = parse_xvlm(list(xvlm))
        if source is None:
            try:
                source = xvlm_finetune.detect_source(pairs)
            except ConvertError:
                source = "coco"
        names = [n for n, _ in pairs]
        splits = [s for s in SPLITS if s in names] + [s for s in names if s not in SPLITS]
        args = {"xvlm": {n: p.name for n, p in pairs}}
        reader = xvlm_finetune.Retrieval(pairs, source)
    spec = fc.Spec(task="caption", source=source, out=Path(out), image_root=root, splits=splits, args=args,
                   overwrite=overwrite, workers=workers, progress=progress, hints=HINTS)
    fc.check_out(spec)
    gt = GroundTruth(splits)
    return fc.write(reader, spec, input_records=lambda: reader.records, on_line=gt, finish=gt.finish)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.coco_caption", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--karpathy", type=Path, help="Karpathy's dataset_coco.json")
    parser.add_argument("--xvlm", action="append", default=[], metavar="[SPLIT=]FILE",
                        help="an X-VLM file (coco_karpathy_train.json, coco_karpathy_val.json, ...); repeat")
    parser.add_argument("--images", required=True, type=Path, help="COCO image root (holding train2014/, val2014/)")
    parser.add_argument("--source", help="dataset name (default: coco, from the file)")
    fc.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> dict[str, Any]:
    return convert_coco_caption(a.images, a.out, a.karpathy, a.xvlm, a.source, a.overwrite, a.workers,
                                not a.no_progress)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.coco_caption``."""
    return fc.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
