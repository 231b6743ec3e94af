"""RefCOCO+ (and RefCOCO / RefCOCOg) from the REFER toolkit files -> grounding task files.

    python -m data_prep.refer --refs "refcoco+/refs(unc).p" --instances refcoco+/instances.json \\
        --images COCO_ROOT --out OUT

``refs(unc).p`` is a Python 2 pickle of a list of refs ``{"ref_id", "ann_id", "image_id", "split": "train"|"val"|
"testA"|"testB", "sentences": [{"sent", "raw", "tokens", "sent_id"}], "file_name", "category_id", "sent_ids"}``. It
is read by a restricted unpickler that builds only lists, dicts, strings, numbers, booleans and None: a pickle that
names any class or function (e.g. ``os.system``) is refused with an error naming the file, and nothing of it runs.
(A refs file in JSON, ``.json``, is read as JSON.) ``instances.json`` is COCO-format (streamed): the box of a ref is
its annotation ``ann_id``'s ``bbox`` [x, y, w, h], its image ``images[image_id].file_name``
(``COCO_train2014_000000581857.jpg``), looked up as ``ROOT/<name>``, ``ROOT/train2014/<name>``,
``ROOT/images/train2014/<name>`` or ``ROOT/images/mscoco/images/train2014/<name>`` (REFER's layout).

One line per ref, in refs order: ``{"image", "image_id": "coco/<id>", "width", "height", "ref_id", "texts", "bbox"}``
into ``<split>.jsonl`` (``train``, ``val``, ``testA``, ``testB`` for unc; ``test`` for umd/google). Texts are the
``sent`` strings (``raw`` when ``sent`` is missing), stripped; empty ones are dropped and counted. The box is mapped
onto the image as stored (declared size from ``instances.json``), clipped when it pokes out, and the ref skipped when
it has no area or lies mostly outside the image.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep import finetune_common as fc
from data_prep.convert import ConvertError
from data_prep.jsonstream import iter_object

SPLITS = ("train", "val", "test", "testA", "testB", "testC")  # REFER's split names (unc, umd, google, berkeley)
SUBDIRS = ("train2014", "images/train2014", "images/mscoco/images/train2014")
_REF_SUFFIX = re.compile(r"^(.*)_\d+(\.[A-Za-z]+)$")  # COCO_train2014_000000581857_16.jpg -> ..._000000581857.jpg


# ----------------------------------------------------------------------------------------------- the pickle
class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a class or function: refused (loading it could run code)."""


class RestrictedUnpickler(pickle.Unpickler):
    """Builds plain data only: every global (class, function) a pickle asks for is refused. Lists, dicts, tuples,
    strings, bytes, numbers, booleans and None are built by opcodes that need no global."""

    def find_class(self, module: str, name: str) -> Any:
        raise ForbiddenGlobal(f"{module}.{name}")


def _text(value: Any) -> Any:
    """Python 2 ``str`` values arrive as bytes: decode them (UTF-8, else Latin-1), in containers too."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    return value


def load_refs(path: str | Path) -> list[Any]:
    """The refs list of a REFER ``refs(*).p`` pickle (restricted: see :class:`RestrictedUnpickler`) or ``.json``."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ConvertError(f"{path} is not valid JSON ({err}); a truncated download? Fetch it again.") from None
    else:
        try:
            with open(path, "rb") as fp:
                data = RestrictedUnpickler(fp, encoding="bytes").load()
        except ForbiddenGlobal as err:
            raise ConvertError(f"{path} was refused: it names {err}, and a REFER refs file holds only lists, dicts, "
                               f"strings and numbers (nothing of it was run). Is it the published refs(unc).p? Use "
                               f"the file from the REFER release.") from None
        except EOFError:
            raise ConvertError(f"{path} ends early: the pickle is truncated (an interrupted download?); fetch "
                               f"the file again.") from None
        except MemoryError:
            raise ConvertError(f"{path} is not a readable refs pickle (it asks for more memory than there is)") \
                from None
        except Exception as err:  # noqa: BLE001 - any other unpickling failure: a corrupt or foreign file
            raise ConvertError(f"{path} is not a readable refs pickle ({type(err).__name__}: {err}); is it REFER's "
                               f"refs(unc).p?") from None
        data = _text(data)
    if not isinstance(data, list):
        raise ConvertError(f"{path} holds a {type(data).__name__}, not the list of refs of the REFER toolkit")
    return data


# ----------------------------------------------------------------------------------------------- instances
@dataclass
class Instances:
    """What grounding needs from a COCO-format ``instances.json``: boxes by annotation id, images by id."""

    boxes: dict[int, tuple[int | None, Any]] = field(default_factory=dict)  # ann id -> (image id, bbox)
    images: dict[int, tuple[str | None, tuple[Any, Any] | None]] = field(default_factory=dict)  # id -> (name, size)
    bad: int = 0


def load_instances(path: str | Path, ann_ids: set[int] | None = None, image_ids: set[int] | None = None) -> Instances:
    """Stream ``path`` keeping the annotations ``ann_ids`` and images ``image_ids`` (None: all)."""
    path = Path(path)
    data, found = Instances(), False
    for key, value in fc.guarded(iter_object(path, stream={"images", "annotations"}), path):
        if key not in ("images", "annotations"):
            continue
        if not isinstance(value, Iterator):
            raise ConvertError(f"{path}: '{key}' is a {type(value).__name__}, not an array: is it a COCO-format "
                               f"instances.json?")
        found = found or key == "annotations"
        for entry in fc.guarded(value, path):
            ident = fc.as_id(entry.get("id")) if isinstance(entry, dict) else None
            if not fc.is_int(ident):
                data.bad += 1
            elif key == "annotations" and (ann_ids is None or ident in ann_ids):
                image_id = fc.as_id(entry.get("image_id"))
                data.boxes[ident] = (image_id if fc.is_int(image_id) else None, entry.get("bbox"))
            elif key == "images" and (image_ids is None or ident in image_ids):
                name = entry.get("file_name")
                size = (entry.get("width"), entry.get("height"))
                data.images[ident] = (name if isinstance(name, str) and name.strip() else None,
                                      size if all(fc.is_int(v) and v > 0 for v in size) else None)
    if not found:
        raise ConvertError(f"{path} has no 'annotations' array: is it the REFER instances.json (COCO format)?")
    return data


# ----------------------------------------------------------------------------------------------- refs -> items
def texts_of_sentences(sentences: Any, dropped: Counter) -> list[str]:
    """The expressions of a ref: each sentence's ``sent`` (``raw`` when missing), stripped, non-empty."""
    out = []
    for sentence in sentences:
        if not isinstance(sentence, dict):
            dropped["bad_caption"] += 1
            continue
        text = sentence.get("sent")
        if not (isinstance(text, str) and text.strip()) and "raw" in sentence:
            text = sentence["raw"]
        if isinstance(text, str):
            out += fc.texts_of(text, "sent", dropped)
        else:
            dropped["bad_caption"] += 1
    return out


def image_names(image_id: int, instances: Instances, ref_file: Any) -> list[str]:
    """Candidate file names of a ref's image: the instances' ``file_name``, the ref's ``file_name`` without its
    ``_<ann>`` suffix, COCO's train2014 name."""
    names = []
    name = instances.images.get(image_id, (None, None))[0]
    if name:
        names.append(name.strip())
    if isinstance(ref_file, str) and ref_file.strip():
        match = _REF_SUFFIX.match(ref_file.strip())
        names.append(match.group(1) + match.group(2) if match else ref_file.strip())
    names.append(f"COCO_train2014_{image_id:012d}.jpg")
    return list(dict.fromkeys(c for n in names for c in fc.candidates(n, SUBDIRS)))


def ref_item(index: int, ref: Any, instances: Instances, split: str | None = None) -> fc.Item | fc.Skip:
    """One REFER ref -> an output line (or why not). ``split`` overrides the ref's own."""
    key = f"refs[{index}]"
    if not isinstance(ref, dict):
        return fc.Skip("bad_record", key, f"not an object: {type(ref).__name__}")
    ref_id = fc.as_id(ref.get("ref_id"))
    if ref_id is None:
        return fc.Skip("bad_record", key, f"ref_id {ref.get('ref_id')!r}")
    key = f"ref {ref_id}"
    split = split or ref.get("split")
    if split not in SPLITS:
        return fc.Skip("unknown_split", key, f"split {ref.get('split')!r} (expected one of {', '.join(SPLITS)})")
    ann_id, image_id = fc.as_id(ref.get("ann_id")), fc.as_id(ref.get("image_id"))
    sentences = ref.get("sentences")
    if not fc.is_int(ann_id) or not fc.is_int(image_id) or not isinstance(sentences, list):
        return fc.Skip("bad_record", key, f"ann_id {ref.get('ann_id')!r}, image_id {ref.get('image_id')!r}, "
                                          f"sentences {type(sentences).__name__} (ints and a list expected)")
    dropped: Counter = Counter()
    texts = texts_of_sentences(sentences, dropped)
    if not texts:
        return fc.Skip("no_text", key, f"{len(sentences)} sentence(s), none with text", dict(dropped))
    if ann_id not in instances.boxes:
        return fc.Skip("unknown_annotation", key, f"ann_id {ann_id} is not in the instances file", dict(dropped))
    ann_image, bbox = instances.boxes[ann_id]
    if ann_image is not None and ann_image != image_id:
        return fc.Skip("annotation_mismatch", key, f"ann_id {ann_id} belongs to image {ann_image}, the ref to "
                                                   f"{image_id}", dict(dropped))
    frame = instances.images.get(image_id, (None, None))[1]
    return fc.Item(split=split, key=key, unique=str(ref_id), image_id=f"coco/{image_id}",
                   images=image_names(image_id, instances, ref.get("file_name")),
                   fields={"ref_id": ref_id, "texts": texts}, bbox=bbox,
                   frame=frame, dropped=dict(dropped))


def needed_ids(refs: list[Any]) -> tuple[set[int], set[int]]:
    """The annotation and image ids the refs name."""
    anns, images = set(), set()
    for ref in refs:
        if isinstance(ref, dict):
            ann, image = fc.as_id(ref.get("ann_id")), fc.as_id(ref.get("image_id"))
            if fc.is_int(ann):
                anns.add(ann)
            if fc.is_int(image):
                images.add(image)
    return anns, images


def split_order(names: set[str]) -> list[str]:
    return [s for s in SPLITS if s in names]


HINTS = {
    "unknown_annotation": "the refs' ann_id are not in --instances: is it the instances.json of the same REFER "
                          "dataset as --refs?",
    "bad_record": "the refs do not have the REFER layout (ref_id, ann_id, image_id, split, sentences)",
}


def convert_refer(refs: str | Path, instances: str | Path, images: str | Path, out: str | Path,
                  source: str = "refcoco+", overwrite: bool = False, workers: int = 4,
                  progress: bool = True) -> dict[str, Any]:
    """Convert REFER refs + instances; returns the manifest."""
    root = fc.require_dir(images)
    refs_path, inst_path = fc.require_file(refs, "--refs"), fc.require_file(instances, "--instances")
    spec = fc.Spec(task="grounding", source=source, out=Path(out), image_root=root, splits=(),
                   args={"refs": refs_path.name, "instances": inst_path.name}, overwrite=overwrite,
                   workers=workers, progress=progress, hints=HINTS)
    fc.check_out(spec)
    data = load_refs(refs_path)
    inst = load_instances(inst_path, *needed_ids(data))
    spec.splits = split_order({r.get("split") for r in data if isinstance(r, dict) and isinstance(r.get("split"), str)})
    items = [ref_item(i, ref, inst) for i, ref in enumerate(data)]
    return fc.write(items, spec, input_records=lambda: len(data),
                    ignored=lambda: {"instances_entry_without_id": inst.bad})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.refer", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--refs", required=True, type=Path, help="REFER refs(unc).p (or a refs .json)")
    parser.add_argument("--instances", required=True, type=Path, help="REFER instances.json of the same dataset")
    parser.add_argument("--images", required=True, type=Path, help="COCO image root (or its train2014 folder)")
    parser.add_argument("--source", default="refcoco+", help="dataset name for the manifest (default refcoco+)")
    fc.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> dict[str, Any]:
    return convert_refer(a.refs, a.instances, a.images, a.out, a.source, a.overwrite, a.workers, not a.no_progress)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.refer``."""
    return fc.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
