"""NLVR2 (the official JSON-lines files, or the X-VLM release's json files) -> nlvr2 task files.

    python -m data_prep.nlvr2 --split train.json --split dev.json --split test1.json --images NLVR2_ROOT --out OUT
    python -m data_prep.nlvr2 --split nlvr_train.json --split nlvr_dev.json --split nlvr_test.json \\
        --images NLVR2_ROOT --out OUT

Inputs (``--split [NAME=]FILE``; the split is named after the file: ``train``, ``dev``, ``test1``; X-VLM's
``nlvr_train``/``nlvr_dev``/``nlvr_test`` -> ``train``/``dev``/``test1``, its test file being test-P):

- official (``train.json``, ``dev.json``, ``test1.json``: one JSON object per line): ``{"identifier":
  "train-10171-0-0", "sentence", "label": "True"|"False", "left_url", "right_url", "synset", "query",
  "directory": 46 (train only), ...}``. The pair's images are ``<identifier without its last -N>-img0.png`` and
  ``-img1.png`` (``.jpg`` also tried), under ``ROOT/train/<directory>/``, ``ROOT/dev/``, ``ROOT/test1/`` (also with
  an ``images/`` folder between, or without the sub-folders; a train record without its ``directory`` is looked up
  in every ``train/<n>/`` folder).
- X-VLM (``nlvr_{train,dev,test}.json``, one JSON array): ``[{"images": ["images/train/46/train-10171-0-img0.png",
  "...-img1.png"], "sentence", "label": "True"|"False"}]``, the paths relative to ``--images`` (each tail tried).

The layout is told by the file (a JSON array or JSON lines) and the records. One line per example, in input order:
``{"images": [image0, image1], "image_id": "nlvr2/<pair>", "sizes": [[w, h], [w, h]], "identifier", "sentence",
"label": true|false}``; ``<pair>`` is the identifier without its sentence number (``train-10171-0``), from the
image file name for X-VLM entries, whose ``identifier`` is null. Labels other than "True"/"False" (or JSON booleans)
are skipped (``bad_label``).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from data_prep import finetune_common as fc
from data_prep.convert import ConvertError
from data_prep.jsonstream import iter_array

SPLIT_ORDER = ("train", "dev", "test1", "test2")
EXTENSIONS = (".png", ".jpg", ".jpeg")
_IDENTIFIER = re.compile(r"^((?:[A-Za-z0-9]+)-\d+-\d+)-\d+$")
_IMAGE_NAME = re.compile(r"^(.+)-img[01]\.[A-Za-z]+$")
_NAMED = re.compile(r"^([A-Za-z0-9_]+)=(.+)$")


def split_of(path: Path) -> str:
    """``train.json`` -> train, ``nlvr_dev.json`` -> dev, ``nlvr_test.json`` -> test1 (X-VLM's test is test-P)."""
    stem = path.stem.lower().replace("-", "_")
    for prefix in ("nlvr2_", "nlvr_"):
        stem = stem.removeprefix(prefix)
    if stem in ("test", "test_p", "testp"):
        return "test1"
    if stem in ("test_u", "testu"):
        return "test2"
    if stem in ("val", "valid"):
        return "dev"
    if re.fullmatch(r"[a-z0-9_]+", stem):
        return stem
    raise ConvertError(f"cannot name the split of {path}: give it as --split NAME={path}")


def parse_splits(values: list[str]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for value in values:
        named = _NAMED.match(value)
        if named and not Path(value).is_file():
            name, file = named.groups()
            pair = (name, fc.require_file(file, f"--split {name}="))
        else:
            path = fc.require_file(value, "--split")
            pair = (split_of(path), path)
        if pair[0] in (n for n, _ in out):
            raise ConvertError(f"split {pair[0]} is given twice ({pair[1].name}); name them --split NAME=FILE")
        out.append(pair)
    return out


def parse_label(value: Any) -> bool | None:
    """``"True"``/``"False"`` (any case, stripped) or a JSON boolean; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


# ----------------------------------------------------------------------------------------------- reading
def _first_char(path: Path) -> str:
    try:
        with open(path, encoding="utf-8-sig") as fp:
            while chunk := fp.read(4096):
                stripped = chunk.lstrip()
                if stripped:
                    return stripped[0]
    except UnicodeDecodeError as err:
        raise ConvertError(f"{path} is not UTF-8 text ({err}): is it the NLVR2 file?") from None
    return ""


class _BadLine:
    def __init__(self, error: str):
        self.error = error


def json_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for each non-blank line; a line that is not JSON gives a :class:`_BadLine`, except a last
    line cut short (no newline at its end), which is an error naming the file (a truncated download)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fp:
            for number, text in enumerate(fp, 1):
                if not text.strip():
                    continue
                try:
                    yield f"{path.name}:{number}", json.loads(text)
                except ValueError as err:
                    if not text.endswith("\n"):
                        raise ConvertError(f"{path} is not complete, valid JSON lines (line {number} is cut "
                                           f"short: {err}); a truncated or interrupted download? Fetch the file "
                                           f"again.") from None
                    yield f"{path.name}:{number}", _BadLine(str(err))
    except UnicodeDecodeError as err:
        raise ConvertError(f"{path} is not UTF-8 text ({err}): is it the NLVR2 file?") from None


def records(path: Path) -> Iterator[tuple[str, Any]]:
    """The records of an NLVR2 file, JSON lines (official) or a JSON array (X-VLM), with where they are."""
    first = _first_char(path)
    if first == "[":
        for index, entry in enumerate(fc.guarded(iter_array(path), path)):
            yield f"{path.name}[{index}]", entry
    elif first in ("{", ""):
        yield from json_lines(path)
    else:
        raise ConvertError(f"{path} is neither JSON lines nor a JSON array (it starts with {first!r}): is it an "
                           f"NLVR2 file?")


# ----------------------------------------------------------------------------------------------- one record
class FolderIndex:
    """File name -> path (relative to the root) of the images in the numbered sub-folders of ``ROOT/train/`` and
    ``ROOT/images/train/``; listed once, when a train record without a usable ``directory`` first asks."""

    def __init__(self, root: Path):
        self.root, self.names = root, None

    def __call__(self, name: str) -> list[str]:
        if self.names is None:
            self.names = {}
            for base in ("train", "images/train"):
                top = self.root / base
                subdirs = sorted(p for p in top.iterdir() if p.is_dir()) if top.is_dir() else []
                for sub in subdirs:
                    for path in sorted(sub.iterdir()):
                        self.names.setdefault(path.name, f"{base}/{sub.name}/{path.name}")
        found = self.names.get(name)
        return [found] if found else []


def official_images(pair: str, directory: Any, index: FolderIndex | None = None) -> list[list[str]]:
    """Candidate paths of the pair's two images (see the module doc)."""
    folder = pair.split("-", 1)[0]
    dirs = []
    numbered = fc.is_int(directory) or (isinstance(directory, str) and directory.strip().isdigit())
    if numbered:
        d = int(directory)
        dirs += [f"{folder}/{d}", f"images/{folder}/{d}"]
    dirs += [folder, f"images/{folder}", ""]
    sets = []
    for k in (0, 1):
        names = [f"{pair}-img{k}{ext}" for ext in EXTENSIONS]
        paths = [f"{d}/{n}" if d else n for d in dirs for n in names]
        if not numbered and folder == "train" and index is not None:
            paths += [p for n in names for p in index(n)]
        sets.append(list(dict.fromkeys(paths)))
    return sets


def item(split: str, where: str, record: Any, index: FolderIndex | None = None) -> fc.Item | fc.Skip:
    """One NLVR2 record (either layout) -> an output line (or why not)."""
    if isinstance(record, _BadLine):
        return fc.Skip("bad_record", where, f"not JSON: {record.error}")
    if not isinstance(record, dict):
        return fc.Skip("bad_record", where, f"not an object: {type(record).__name__}")
    sentence, identifier = record.get("sentence"), record.get("identifier")
    if identifier is not None and not (isinstance(identifier, str) and _IDENTIFIER.match(identifier.strip())):
        return fc.Skip("bad_record", where, f"identifier {identifier!r} (expected <split>-<set>-<pair>-<n>)")
    identifier = identifier.strip() if identifier is not None else None
    key = identifier or where
    images = record.get("images")
    if identifier is None and not (isinstance(images, list) and len(images) == 2
                                   and all(isinstance(p, str) and p.strip() for p in images)):
        return fc.Skip("bad_record", key, f"neither an identifier nor two image paths (images {images!r})"[:300])
    if not isinstance(sentence, str):
        return fc.Skip("bad_record", key, f"sentence is {type(sentence).__name__}, not a string")
    if not sentence.strip():
        return fc.Skip("no_text", key, "empty sentence")
    label = parse_label(record.get("label"))
    if label is None:
        return fc.Skip("bad_label", key, f"label {record.get('label')!r} (expected \"True\" or \"False\")")
    if isinstance(images, list) and len(images) == 2 and all(isinstance(p, str) and p.strip() for p in images):
        paths = [p.strip() for p in images]
        sets = [fc.candidates(p) for p in paths]
        match = _IMAGE_NAME.match(PurePosixPath(paths[0].replace("\\", "/")).name)
        pair = _IDENTIFIER.match(identifier).group(1) if identifier else (match.group(1) if match else paths[0])
        unique = identifier or f"{paths[0]}|{paths[1]}|{sentence.strip()}"
    else:
        pair = _IDENTIFIER.match(identifier).group(1)
        sets, unique = official_images(pair, record.get("directory"), index), identifier
    return fc.Item(split=split, key=key, unique=unique, image_id=f"nlvr2/{pair}", images=(), image_sets=sets,
                   fields={"identifier": identifier, "sentence": sentence.strip(), "label": label})


class Reader:
    """Streams the split files as items; counts the records read."""

    def __init__(self, splits: list[tuple[str, Path]], root: Path | None = None):
        self.splits, self.records = splits, 0
        self.index = FolderIndex(root) if root is not None else None

    def __iter__(self) -> Iterator[fc.Item | fc.Skip]:
        for split, path in self.splits:
            for where, record in records(path):
                self.records += 1
                yield item(split, where, record, self.index)


HINTS = {
    "bad_label": "the labels are not \"True\"/\"False\": is it an NLVR2 file?",
    "no_text": "the sentences are empty",
    "bad_record": "the records do not have the NLVR2 layout (identifier or images, sentence, label)",
}


def convert_nlvr2(splits: list[str], images: str | Path, out: str | Path, overwrite: bool = False, workers: int = 4,
                  progress: bool = True) -> dict[str, Any]:
    """Convert NLVR2 files (``splits``: ``[NAME=]FILE`` strings); returns the manifest."""
    root = fc.require_dir(images)
    if not splits:
        raise ConvertError("give at least one --split [NAME=]FILE (train.json, dev.json, test1.json)")
    pairs = parse_splits(splits)
    names = [n for n, _ in pairs]
    order = [s for s in SPLIT_ORDER if s in names] + [s for s in names if s not in SPLIT_ORDER]
    spec = fc.Spec(task="nlvr2", source="nlvr2", out=Path(out), image_root=root, splits=order,
                   args={"splits": {n: p.name for n, p in pairs}}, overwrite=overwrite, workers=workers,
                   progress=progress, hints=HINTS)
    fc.check_out(spec)
    reader = Reader(pairs, root)
    return fc.write(reader, spec, input_records=lambda: reader.records)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.nlvr2", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--split", action="append", default=[], required=True, metavar="[NAME=]FILE",
                        help="a split file (train.json, dev.json, test1.json or X-VLM's nlvr_*.json); repeat")
    parser.add_argument("--images", required=True, type=Path,
                        help="NLVR2 image root (holding train/<directory>/, dev/, test1/)")
    fc.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> dict[str, Any]:
    return convert_nlvr2(a.split, a.images, a.out, a.overwrite, a.workers, not a.no_progress)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.nlvr2``."""
    return fc.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
