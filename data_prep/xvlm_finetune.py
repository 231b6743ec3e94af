"""The X-VLM release's fine-tuning JSON files (retrieval, RefCOCO+ grounding) -> task files.

    python -m data_prep.xvlm_finetune --task retrieval --split train=coco_train.json --split val=coco_val.json \\
        --split test=coco_test.json --images COCO_ROOT --out OUT
    python -m data_prep.xvlm_finetune --task grounding --split train=refcoco+_train.json \\
        --split val=refcoco+_val.json --split test=refcoco+_test.json \\
        --refs "refcoco+/refs(unc).p" --instances refcoco+/instances.json --images COCO_ROOT --out OUT

Each file is one JSON array (streamed), as X-VLM's ``dataset/re_dataset.py`` and ``dataset/grounding_dataset.py``
read them:

- retrieval train (``coco_train.json``, ``flickr30k_train.json``): ``[{"image": "val2014/COCO_val2014_...jpg",
  "caption": str, "image_id": ...}]``, one caption per entry; val/test (``coco_val.json``, ``coco_test.json``, ...):
  ``[{"image": ..., "caption": [str, ...]}]``. Entries are grouped per image path (first-seen order), one line per
  image: ``{"image", "image_id", "width", "height", "captions"}``. Image ids come from the file name
  (``coco/<id>`` for ``COCO_*_<id>.jpg``, ``flickr30k/<stem>``, as :mod:`data_prep.karpathy` writes them), else from
  the entry's ``image_id`` (``<source>/<image_id>``), else from the path (``<source>/<image>``).
- grounding (``refcoco+_{train,val,test}.json``): ``[{"image": ..., "text": str, "ref_id": int}]``, one expression
  per entry; they carry **no box** (X-VLM takes it from the REFER toolkit), so pass ``--refs``/``--instances``
  (see :mod:`data_prep.refer`); entries with their own ``"bbox"`` [x, y, w, h] (and ``"width"``/``"height"``, the
  VLUE layout) need neither. Entries are grouped per ``ref_id``: ``{"image", "image_id", "width", "height",
  "ref_id", "texts", "bbox"}``. With ``--refs``, the refs of the ``test`` file go to ``testA.jsonl`` /
  ``testB.jsonl`` by their REFER split (X-VLM's test file holds both); other splits keep the name given.

Images are looked up as ``ROOT/<image>``, then each tail of ``<image>`` (``coco/train2014/x.jpg`` ->
``train2014/x.jpg`` -> ``x.jpg``), then ``ROOT/{train2014,val2014,flickr30k-images}/<file name>``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep import finetune_common as fc
from data_prep import refer
from data_prep.convert import ConvertError
from data_prep.jsonstream import iter_array

SUBDIRS = ("train2014", "val2014", "flickr30k-images")


@dataclass
class _Group:
    """The entries of one image (retrieval) or one ref (grounding) in one split file."""

    image: str
    key: str
    published_id: Any = None
    texts: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    bbox: Any = None
    frame: tuple[Any, Any] | None = None


def parse_splits(values: list[str]) -> list[tuple[str, Path]]:
    """``NAME=FILE`` options -> ``[(name, path)]`` (names unique, files existing)."""
    out: list[tuple[str, Path]] = []
    for value in values:
        name, sep, file = value.partition("=")
        if not sep or not file:
            raise ConvertError(f"--split {value!r}: expected NAME=FILE, e.g. --split train=coco_train.json")
        fc.check_split_name(name)
        if name in (n for n, _ in out):
            raise ConvertError(f"--split {name} is given twice")
        out.append((name, fc.require_file(file, f"--split {name}=")))
    return out


def _entries(path: Path) -> Iterator[tuple[int, Any]]:
    return enumerate(fc.guarded(iter_array(path), path))


def _image_of(entry: dict) -> str | None:
    image = entry.get("image")
    return image.strip() if isinstance(image, str) and image.strip() else None


def image_id(source: str, image: str, published: Any) -> str:
    """The line's image id (see the module doc)."""
    by_name = fc.image_id_from_name(source, image)
    if by_name:
        return by_name
    return f"{source}/{published}" if published is not None else f"{source}/{image}"


# ----------------------------------------------------------------------------------------------- retrieval
class Retrieval:
    """Streams retrieval split files as items (one per image per file); counts the entries read."""

    def __init__(self, splits: list[tuple[str, Path]], source: str):
        self.splits, self.source, self.records = splits, source, 0

    def __iter__(self) -> Iterator[fc.Item | fc.Skip]:
        for split, path in self.splits:
            groups: dict[str, _Group] = {}
            for index, entry in _entries(path):
                self.records += 1
                key = f"{path.name}[{index}]"
                if not isinstance(entry, dict):
                    yield fc.Skip("bad_record", key, f"not an object: {type(entry).__name__}")
                    continue
                image = _image_of(entry)
                if image is None or "caption" not in entry:
                    yield fc.Skip("bad_record", key, f"image {entry.get('image')!r}, caption "
                                                     f"{'present' if 'caption' in entry else 'missing'}")
                    continue
                group = groups.get(image)
                if group is None:
                    group = groups[image] = _Group(image, key)
                if group.published_id is None:
                    group.published_id = fc.as_id(entry.get("image_id"))
                group.texts += fc.texts_of(entry["caption"], "caption", group.dropped)
            for image, group in groups.items():
                ident = image_id(self.source, image, group.published_id)
                if not group.texts:
                    yield fc.Skip("no_text", ident, "no non-empty caption", dict(group.dropped))
                    continue
                yield fc.Item(split=split, key=ident, unique=ident, image_id=ident,
                              images=fc.candidates(image, SUBDIRS), fields={"captions": group.texts},
                              dropped=dict(group.dropped))


# ----------------------------------------------------------------------------------------------- grounding
def read_grounding(splits: list[tuple[str, Path]]) -> tuple[list[tuple[str, list[fc.Skip], dict[Any, _Group]]], int]:
    """Per split: the skipped entries and the entries grouped by ref id; and the number of entries read."""
    out, records = [], 0
    for split, path in splits:
        skips: list[fc.Skip] = []
        groups: dict[Any, _Group] = {}
        for index, entry in _entries(path):
            records += 1
            key = f"{path.name}[{index}]"
            ref_id = fc.as_id(entry.get("ref_id")) if isinstance(entry, dict) else None
            image = _image_of(entry) if isinstance(entry, dict) else None
            if ref_id is None or image is None or "text" not in entry:
                skips.append(fc.Skip("bad_record", key, f"not an entry with image, text and ref_id: {entry!r}"[:300]))
                continue
            group = groups.get(ref_id)
            if group is None:
                group = groups[ref_id] = _Group(image, f"ref {ref_id}")
            group.texts += fc.texts_of(entry["text"], "text", group.dropped)
            if group.bbox is None and entry.get("bbox") is not None:
                group.bbox = entry["bbox"]
                if fc.is_int(entry.get("width")) and fc.is_int(entry.get("height")):
                    group.frame = (entry["width"], entry["height"])
        out.append((split, skips, groups))
    return out, records


def grounding_items(data: list[tuple[str, list[fc.Skip], dict[Any, _Group]]], source: str,
                    refs: dict[Any, dict] | None, instances: refer.Instances | None) -> Iterator[fc.Item | fc.Skip]:
    for split, skips, groups in data:
        yield from skips
        for ref_id, group in groups.items():
            ref = refs.get(ref_id) if refs is not None else None
            if not group.texts:
                yield fc.Skip("no_text", group.key, "no non-empty expression", dict(group.dropped))
                continue
            bbox, frame, ident, out_split = group.bbox, group.frame, None, split
            if ref is not None:
                ref_image = fc.as_id(ref.get("image_id"))
                ident = f"coco/{ref_image}" if fc.is_int(ref_image) else None
                if split == "test" and ref.get("split") in ("testA", "testB"):
                    out_split = ref["split"]
                if bbox is None:
                    ann = fc.as_id(ref.get("ann_id"))
                    if ann not in instances.boxes:
                        yield fc.Skip("unknown_annotation", group.key, f"ann_id {ann!r} is not in the instances "
                                                                       f"file", dict(group.dropped))
                        continue
                    bbox = instances.boxes[ann][1]
                    if fc.is_int(ref_image):
                        frame = instances.images.get(ref_image, (None, None))[1]
            if bbox is None:
                reason = "unknown_ref" if refs is not None else "no_box"
                yield fc.Skip(reason, group.key, "the entries carry no bbox" + (
                    " and --refs has no such ref_id" if refs is not None else "; pass --refs and --instances"),
                    dict(group.dropped))
                continue
            ident = ident or fc.image_id_from_name("coco", group.image) or f"{source}/{group.image}"
            yield fc.Item(split=out_split, key=group.key, unique=str(ref_id), image_id=ident,
                          images=fc.candidates(group.image, SUBDIRS), fields={"ref_id": ref_id, "texts": group.texts},
                          bbox=bbox, frame=frame, dropped=dict(group.dropped))


# ----------------------------------------------------------------------------------------------- entry
def detect_source(splits: list[tuple[str, Path]]) -> str:
    names = " ".join(p.name.lower() for _, p in splits)
    for source in ("flickr30k", "coco"):
        if source in names:
            return source
    raise ConvertError("cannot tell the dataset from the file names: pass --source (coco, flickr30k, ...)")


HINTS = {
    "no_box": "X-VLM's grounding files carry no boxes: pass --refs refs(unc).p and --instances instances.json",
    "unknown_ref": "the files' ref_id are not in --refs: is it the refs file of the same dataset?",
    "unknown_annotation": "the refs' ann_id are not in --instances: is it the instances.json of the same dataset?",
    "bad_record": "the entries do not have the layout of X-VLM's files for this --task",
}


def convert_xvlm_finetune(task: str, splits: list[str], images: str | Path, out: str | Path, source: str | None = None,
                          refs: str | Path | None = None, instances: str | Path | None = None,
                          overwrite: bool = False, workers: int = 4, progress: bool = True) -> dict[str, Any]:
    """Convert X-VLM fine-tuning files (``splits``: ``NAME=FILE`` strings); returns the manifest."""
    root = fc.require_dir(images)
    if task not in fc.TASKS:
        raise ConvertError(f"--task {task!r}: one of {', '.join(fc.TASKS)}")
    if not splits:
        raise ConvertError("give at least one --split NAME=FILE")
    pairs = parse_splits(splits)
    if (refs is None) != (instances is None):
        raise ConvertError("--refs and --instances go together (the ref's box is its annotation in instances.json)")
    if task == "retrieval" and refs is not None:
        raise ConvertError("--refs/--instances are for --task grounding")
    refs_path = fc.require_file(refs, "--refs") if refs is not None else None
    inst_path = fc.require_file(instances, "--instances") if instances is not None else None
    source = source or (detect_source(pairs) if task == "retrieval" else "refcoco+")
    names = [n for n, _ in pairs]
    if task == "grounding" and refs_path is not None:
        names = [s for n in names for s in (("testA", "testB") if n == "test" else (n,))]
    args = {"splits": {n: p.name for n, p in pairs}}
    if refs_path is not None:
        args.update(refs=refs_path.name, instances=inst_path.name)
    spec = fc.Spec(task=task, source=source, out=Path(out), image_root=root, splits=names, args=args,
                   overwrite=overwrite, workers=workers, progress=progress, hints=HINTS)
    fc.check_out(spec)
    if task == "retrieval":
        reader = Retrieval(pairs, source)
        return fc.write(reader, spec, input_records=lambda: reader.records)
    data, records = read_grounding(pairs)
    ref_map, inst = None, None
    if refs_path is not None:
        ref_list = refer.load_refs(refs_path)
        ref_map = {}
        for ref in ref_list:
            if isinstance(ref, dict) and fc.as_id(ref.get("ref_id")) is not None:
                ref_map.setdefault(fc.as_id(ref["ref_id"]), ref)
        wanted = [ref_map[r] for _, _, groups in data for r in groups if r in ref_map]
        inst = refer.load_instances(inst_path, *refer.needed_ids(wanted))
    return fc.write(grounding_items(data, source, ref_map, inst), spec, input_records=lambda: records,
                    ignored=lambda: {"instances_entry_without_id": inst.bad if inst else 0})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.xvlm_finetune", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--task", required=True, choices=fc.TASKS)
    parser.add_argument("--split", action="append", default=[], metavar="NAME=FILE", required=True,
                        help="a split and its X-VLM json file (repeat: train=..., val=..., test=...)")
    parser.add_argument("--images", required=True, type=Path, help="the image root the files' paths are relative to")
    parser.add_argument("--source", help="dataset name (retrieval: from the file names, coco or flickr30k; "
                                         "grounding: refcoco+)")
    parser.add_argument("--refs", type=Path, help="grounding: REFER refs(unc).p (boxes and testA/testB)")
    parser.add_argument("--instances", type=Path, help="grounding: REFER instances.json")
    fc.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> dict[str, Any]:
    return convert_xvlm_finetune(a.task, a.split, a.images, a.out, a.source, a.refs, a.instances, a.overwrite,
                                 a.workers, not a.no_progress)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.xvlm_finetune``."""
    return fc.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
