"""Karpathy's retrieval splits (``dataset_coco.json``, ``dataset_flickr30k.json``) -> retrieval task files.

    python -m data_prep.karpathy --karpathy dataset_coco.json --images COCO_ROOT --out OUT
    python -m data_prep.karpathy --karpathy dataset_flickr30k.json --images FLICKR_ROOT --out OUT

The published file is ``{"images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
"split": "train"|"restval"|"val"|"test", "sentences": [{"raw": ..., "tokens": [...]}, ...], "cocoid": 391895, ...}],
"dataset": "coco"}`` (Flickr30K: no ``filepath``, no ``cocoid``); it is streamed. One line per image, in file order:
``{"image", "image_id", "width", "height", "captions"}`` into ``train.jsonl`` (train + restval, as everyone
does), ``val.jsonl`` and ``test.jsonl``. Image ids are ``coco/<cocoid>`` or ``flickr30k/<file name stem>``. Images are
looked up as ``ROOT/<filepath>/<filename>``, ``ROOT/<filename>`` and, for Flickr, ``ROOT/flickr30k-images/<filename>``.
Captions are the ``raw`` sentences, stripped (the tokens joined when ``raw`` is missing); empty ones are dropped and
counted, an image left without caption is skipped (``no_text``).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from data_prep import finetune_common as fc
from data_prep.convert import ConvertError
from data_prep.jsonstream import iter_object

SPLITS = ("train", "val", "test")
SPLIT_OF = {"train": "train", "restval": "train", "val": "val", "test": "test"}
SUBDIRS = {"coco": ("train2014", "val2014"), "flickr30k": ("flickr30k-images",),
           "flickr8k": ("Flicker8k_Dataset", "Flickr8k_Dataset")}
SOURCES = tuple(SUBDIRS)


def detect_source(path: Path) -> str:
    """``coco``, ``flickr30k`` or ``flickr8k``: from the file name, else from the first image entry (``cocoid``:
    COCO, otherwise Flickr30K)."""
    name = path.name.lower()
    for source in ("flickr30k", "flickr8k", "coco"):
        if source in name:
            return source
    with closing(fc.guarded(iter_object(path, stream={"images"}), path)) as members:
        for key, value in members:
            if key == "dataset" and value in SOURCES:
                return value
            if key == "images" and isinstance(value, Iterator):
                for entry in fc.guarded(value, path):
                    if isinstance(entry, dict):
                        return "coco" if "cocoid" in entry else "flickr30k"
    return "flickr30k"


def _captions(sentences: Any, dropped: Counter) -> list[str]:
    out = []
    for sentence in sentences:
        text = sentence.get("raw") if isinstance(sentence, dict) else None
        tokens = sentence.get("tokens") if isinstance(sentence, dict) else None
        if text is None and isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
            text = " ".join(tokens)
        if isinstance(text, str):
            out += fc.texts_of(text, "raw", dropped)
        else:
            dropped["bad_caption"] += 1
    return out


def _image_id(source: str, entry: dict, filename: str) -> str | None:
    if source == "coco":
        cocoid = fc.as_id(entry.get("cocoid"))
        if fc.is_int(cocoid):
            return f"coco/{cocoid}"
        return fc.image_id_from_name("coco", filename)
    stem = filename.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{source}/{stem}" if stem else None


def entry_item(source: str, index: int, entry: Any) -> fc.Item | fc.Skip:
    """One image entry of the Karpathy file -> an output line (or why not)."""
    key = f"images[{index}]"
    if not isinstance(entry, dict):
        return fc.Skip("bad_record", key, f"not an object: {type(entry).__name__}")
    filename, filepath = entry.get("filename"), entry.get("filepath") or ""
    if not isinstance(filename, str) or not filename.strip() or not isinstance(filepath, str):
        return fc.Skip("bad_record", key, f"filename {filename!r}, filepath {filepath!r}: not file names")
    filename = filename.strip()
    image_id = _image_id(source, entry, filename)
    if image_id is None:
        return fc.Skip("bad_record", key, f"no image id (cocoid {entry.get('cocoid')!r}, filename {filename!r})")
    split = SPLIT_OF.get(entry.get("split")) if isinstance(entry.get("split"), str) else None
    if split is None:
        return fc.Skip("unknown_split", image_id, f"split {entry.get('split')!r} (expected train, restval, val "
                                                  f"or test)")
    sentences = entry.get("sentences")
    if not isinstance(sentences, list):
        return fc.Skip("bad_record", image_id, f"sentences is {type(sentences).__name__}, not a list")
    dropped: Counter = Counter()
    captions = _captions(sentences, dropped)
    if not captions:
        return fc.Skip("no_text", image_id, f"{len(sentences)} sentence(s), none with text", dict(dropped))
    names = ([f"{filepath.strip('/')}/{filename}"] if filepath.strip("/") else []) + [filename]
    images = list(dict.fromkeys(c for name in names for c in fc.candidates(name, SUBDIRS.get(source, ()))))
    return fc.Item(split=split, key=image_id, unique=image_id, image_id=image_id, images=images,
                   fields={"captions": captions}, dropped=dict(dropped))


class _Reader:
    """Streams the image entries of a Karpathy file as items; counts what it read."""

    def __init__(self, path: Path, source: str):
        self.path, self.source, self.records, self.found_images = path, source, 0, False

    def __iter__(self) -> Iterator[fc.Item | fc.Skip]:
        for key, value in fc.guarded(iter_object(self.path, stream={"images"}), self.path):
            if key != "images":
                continue
            if not isinstance(value, Iterator):  # a streamed array is an iterator; anything else is decoded
                raise ConvertError(f"{self.path}: 'images' is a {type(value).__name__}, not an array: is it "
                                   f"Karpathy's dataset_*.json?")
            self.found_images = True
            for index, entry in enumerate(fc.guarded(value, self.path)):
                self.records += 1
                yield entry_item(self.source, index, entry)
        if not self.found_images:
            raise ConvertError(f"{self.path} has no 'images' array: is it Karpathy's dataset_coco.json / "
                               f"dataset_flickr30k.json?")


def convert_karpathy(karpathy: str | Path, images: str | Path, out: str | Path, source: str | None = None,
                     overwrite: bool = False, workers: int = 4, progress: bool = True) -> dict[str, Any]:
    """Convert a Karpathy split file; returns the manifest."""
    root = fc.require_dir(images)
    path = fc.require_file(karpathy, "--karpathy")
    if source is not None and source not in SOURCES:
        raise ConvertError(f"--source {source!r}: one of {', '.join(SOURCES)}")
    source = source or detect_source(path)
    spec = fc.Spec(task="retrieval", source=source, out=Path(out), image_root=root, splits=SPLITS,
                   args={"karpathy": path.name}, overwrite=overwrite, workers=workers, progress=progress,
                   hints={"bad_record": f"the entries of {path.name} are not Karpathy image entries"})
    fc.check_out(spec)
    reader = _Reader(path, source)
    return fc.write(reader, spec, input_records=lambda: reader.records)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.karpathy", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--karpathy", required=True, type=Path, help="dataset_coco.json or dataset_flickr30k.json")
    parser.add_argument("--images", required=True, type=Path,
                        help="image root (COCO: holding train2014/ and val2014/; Flickr30K: the image folder "
                             "or its parent)")
    parser.add_argument("--source", choices=SOURCES, help="dataset (default: from the file name or its entries)")
    fc.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> dict[str, Any]:
    return convert_karpathy(a.karpathy, a.images, a.out, a.source, a.overwrite, a.workers, not a.no_progress)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.karpathy``."""
    return fc.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
