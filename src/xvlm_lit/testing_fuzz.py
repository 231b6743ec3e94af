"""A fuzz corpus of small corrupt inputs for every reader (test helper; see docs/reliability_fuzz.md).

Three forms of the same cases, each with the exact good items and skip counts a reader must report:
  - :func:`write_shards`: webdataset shards of the shard schema (pre-training stream, validation stream, zero-shot
    evaluation data); the second shard is cut inside its last sample (a truncated download).
  - :func:`write_task_folder`: a retrieval / grounding / captioning task folder (``manifest.json`` +
    ``<split>.jsonl``); :func:`write_vqa_folder`, :func:`write_nlvr2_folder`: the VQA and NLVR2 forms.
  - :func:`write_reference_jsonl`: the X-VLM reference's JSON-lines format (converter ``data_prep.xvlm_jsonl``).

Cases: corrupt and zero-byte JPEGs, decompression bombs (a valid, highly compressible 10,000 x 10,000 PNG between
PIL's warning and error limits, and a header declaring 20,000 x 20,000), bad JSON, wrong types (a caption that is a
number, captions that are a string, an image path that is a number, a box that is a string), boxes outside the image
or of zero area, an empty and a 10,000-character caption (the latter is a good sample: cut to ``max_words``).
"""

from __future__ import annotations

import functools
import io
import json
import struct
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

SIZE = (48, 40)  # width, height of every good image
GOOD_BOX = [4, 4, 30, 30]
LONG_CAPTION = ("word " * 2000).strip() + "!"  # 10,000 characters
assert len(LONG_CAPTION) == 10_000


# ------------------------------------------------------------------------------------------------ encoded images
def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = SIZE) -> bytes:
    """A plain-colour JPEG."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 10_000, complete: bool = True) -> bytes:
    """A 1-bit grey PNG of ``side`` x ``side`` pixels: all-zero rows (a few kB compressed) when ``complete``, else
    the header alone (no pixel data). 10,000^2 = 1e8 pixels lies between PIL's warning limit (MAX_IMAGE_PIXELS,
    ~8.9e7) and its error limit (twice that); 20,000^2 is above both."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    if complete:
        row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
        out += _png_chunk(b"IDAT", zlib.compress(row * side, 9))
    return out + _png_chunk(b"IEND", b"")


CORRUPT_JPEG = b"\xff\xd8\xff\xe0 this is not a jpeg at all"


@functools.cache
def bad_images() -> dict[str, bytes]:
    """File name -> bytes of the broken images: corrupt, zero-byte, and the two decompression bombs."""
    return {"corrupt.jpg": CORRUPT_JPEG, "zero.jpg": b"", "bomb.png": bomb_png(),
            "bomb_header.png": bomb_png(20_000, complete=False)}


def colour(k: int) -> tuple[int, int, int]:
    return (40 + 20 * k, 200 - 15 * k, 60 + 7 * k)


# ------------------------------------------------------------------------------------------------ shards
@dataclass
class ShardCase:
    """One sample of the shard corpus and what each stream must do with it.

    ``itc`` / ``region``: the skip reasons counted when the sample is read for that stream, in any order;
    ``grounding``: those of the zero-shot grounding reader (region reasons without the whole-image captions, which
    it does not read; None = as ``region``); ``good_itc`` / ``good_region``: whether it yields an item.
    """

    key: str
    members: list[tuple[str, bytes]]
    itc: tuple[str, ...] = ()
    region: tuple[str, ...] = ()
    good_itc: bool = False
    good_region: bool = False
    grounding: tuple[str, ...] | None = None


@dataclass
class ShardCorpus:
    """The written shards and the exact expectations of one ordered pass over them."""

    root: Path
    cases: list[ShardCase]
    broken_tar: int = 1

    def good_ids(self, stream: str) -> list[str]:
        """Image ids of the samples that must come through ``stream`` (``itc`` or ``region``), in order."""
        return [f"fuzz/{c.key}" for c in self.cases if getattr(c, f"good_{stream}")]

    def expected_skips(self, stream: str) -> dict[str, int]:
        """``{reason: n}`` of one ordered pass reading ``stream``."""
        counts = Counter(r for c in self.cases for r in getattr(c, stream))
        counts["broken_tar"] += self.broken_tar
        return dict(counts)

    def expected_grounding_skips(self) -> dict[str, int]:
        """``{reason: n}`` of one ordered pass of the zero-shot grounding reader."""
        counts = Counter(r for c in self.cases for r in (c.region if c.grounding is None else c.grounding))
        counts["broken_tar"] += self.broken_tar
        return dict(counts)

    def expected_pair_skips(self) -> dict[str, int]:
        """``{reason: n}`` when each sample is read once for both streams (validation: ``SampleMaker.pair``)."""
        counts: Counter[str] = Counter()
        for c in self.cases:  # the region reading counts every problem but one: a missing caption
            counts.update(c.region)
            counts.update(r for r in c.itc if r == "no_caption")
        counts["broken_tar"] += self.broken_tar
        return dict(counts)


def _record(key: str, captions: Any = ("a red square",), regions: Any = (), objects: Any = ()) -> dict:
    return {"image_id": f"fuzz/{key}", "source": "fuzz", "width": SIZE[0], "height": SIZE[1],
            "captions": list(captions) if isinstance(captions, tuple) else captions,
            "regions": list(regions) if isinstance(regions, tuple) else regions, "objects": list(objects)}


def _sample(key: str, record: dict | bytes, image: bytes, ext: str = "jpg") -> list[tuple[str, bytes]]:
    data = record if isinstance(record, bytes) else json.dumps(record).encode()
    return [(f"{key}.{ext}", image), (f"{key}.json", data)]


def _region(box: Any = None, caption: Any = "a small box") -> dict:
    return {"bbox": GOOD_BOX if box is None else box, "captions": [caption], "attributes": []}


def shard_cases() -> list[ShardCase]:
    """The cases of shard 0 (see the module docstring); shard 1 adds good samples and a truncation."""
    img = jpeg(colour(9))
    good = [ShardCase(f"good{k}", _sample(f"good{k}", _record(f"good{k}", (f"a square number {k}",), (_region(),)),
                                          jpeg(colour(k))), good_itc=True, good_region=True) for k in range(4)]
    bad_image = [
        ShardCase("corrupt", _sample("corrupt", _record("corrupt", regions=(_region(),)), CORRUPT_JPEG),
                  ("corrupt_image",), ("corrupt_image",)),
        ShardCase("zerobyte", _sample("zerobyte", _record("zerobyte", regions=(_region(),)), b""),
                  ("corrupt_image",), ("corrupt_image",)),
        ShardCase("bomb", _sample("bomb", _record("bomb", regions=(_region(),)), bad_images()["bomb.png"], "png"),
                  ("image_too_large",), ("image_too_large",)),
        ShardCase("bombheader", _sample("bombheader", _record("bombheader", regions=(_region(),)),
                                        bad_images()["bomb_header.png"], "png"),
                  ("image_too_large",), ("image_too_large",)),
    ]
    bad_json = [
        ShardCase("badjson", _sample("badjson", b'{"image_id": "fuzz/badjson", "captions": [', img),
                  ("bad_json",), ("bad_json",)),
        ShardCase("jsonlist", _sample("jsonlist", b'["a", "list"]', img), ("bad_json",), ("bad_json",)),
    ]
    types = [
        # a caption that is a number: no usable caption (itc), its region still serves the region stream
        ShardCase("capnumber", _sample("capnumber", _record("capnumber", [12345], (_region(),)), img),
                  ("wrong_type",), ("wrong_type",), good_region=True, grounding=()),
        # captions given as a string is read as one caption (a common shorthand): a good sample
        ShardCase("capstring", _sample("capstring", _record("capstring", "a lone caption", (_region(),)), img),
                  good_itc=True, good_region=True),
        ShardCase("bboxstring", _sample("bboxstring", _record("bboxstring", regions=(_region("4,4,30,30"),)), img),
                  (), ("bbox_malformed", "no_region_text"), good_itc=True),
        ShardCase("regionnumber", _sample("regionnumber", _record("regionnumber", regions=(_region(caption=7),)),
                                          img), (), ("wrong_type", "no_region_text"), good_itc=True),
    ]
    boxes = [
        ShardCase("outside", _sample("outside", _record("outside", regions=(_region([30, 20, 40, 40]),)), img),
                  (), ("bbox_outside_image", "no_region_text"), good_itc=True),
        ShardCase("zeroarea", _sample("zeroarea", _record("zeroarea", regions=(_region([4, 4, 0, 10]),)), img),
                  (), ("bbox_empty", "no_region_text"), good_itc=True),
    ]
    captions = [
        ShardCase("emptycap", _sample("emptycap", _record("emptycap", [""], (_region(),)), img),
                  ("empty_caption",), ("empty_caption",), good_region=True, grounding=()),
        ShardCase("nocap", _sample("nocap", _record("nocap", [], (_region(),)), img),
                  ("no_caption",), (), good_region=True),
        ShardCase("longcap", _sample("longcap", _record("longcap", [LONG_CAPTION], (_region(caption=LONG_CAPTION),)),
                                     img), good_itc=True, good_region=True),
    ]
    return good + bad_image + bad_json + types + boxes + captions


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return path


def _truncate_inside_last_sample(path: Path) -> None:
    """Cut the tar in the middle of the data of its second-to-last member (the last sample's image)."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    target = members[-2]
    path.write_bytes(path.read_bytes()[: target.offset_data + target.size // 2])


def write_shards(root: str | Path) -> ShardCorpus:
    """Two shards under ``root``: ``fuzz-000000.tar`` (every case) and ``fuzz-000001.tar`` (four good samples, the
    archive cut inside the fourth: three come through, one ``broken_tar``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = shard_cases()
    _write_tar(root / "fuzz-000000.tar", [m for c in cases for m in c.members])
    tail = [ShardCase(f"tail{k}", _sample(f"tail{k}", _record(f"tail{k}", (f"a circle number {k}",), (_region(),)),
                                          jpeg(colour(k + 4))), good_itc=True, good_region=True) for k in range(4)]
    _truncate_inside_last_sample(_write_tar(root / "fuzz-000001.tar", [m for c in tail for m in c.members]))
    tail[-1].good_itc = tail[-1].good_region = False  # lost with the truncated archive (counted as broken_tar)
    return ShardCorpus(root, cases + tail)


# ------------------------------------------------------------------------------------------------ task folders
@dataclass
class TaskCorpus:
    """A task folder and the exact expectations of reading its ``train`` split and building its datasets.

    ``line_skips``: reasons of the lines ``read_split`` leaves out; ``text_skips``: texts left out when the
    dataset is built; ``item_skips``: reasons counted by ``__getitem__`` over every item; ``good_items``: the
    number of items ``__getitem__`` returns (not None).
    """

    root: Path
    line_skips: dict[str, int]
    records: int
    text_skips: dict[str, int]
    item_skips: dict[str, int]
    good_items: int
    extra: dict[str, Any] = field(default_factory=dict)


def _write_images(folder: Path, n_good: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_good):
        (folder / f"good{k}.jpg").write_bytes(jpeg(colour(k)))
    for name, data in bad_images().items():
        (folder / name).write_bytes(data)


def _write_split(root: Path, task: str, lines: list[Any]) -> None:
    (root / "manifest.json").write_text(json.dumps({"task": task, "image_root": str(root / "images")}))
    (root / "train.jsonl").write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


def write_task_folder(root: str | Path, task: str) -> TaskCorpus:
    """A ``retrieval`` or ``grounding`` task folder with the fuzz cases (one text per item)."""
    root = Path(root)
    _write_images(root / "images", 3)
    key = "captions" if task == "retrieval" else "texts"

    def line(k: int, image: Any = None, texts: Any = ("a red box",), **extra: Any) -> dict:
        rec = {"image": f"good{k % 3}.jpg" if image is None else image, "image_id": f"fuzz/{k}",
               key: list(texts) if isinstance(texts, tuple) else texts, **extra}
        return {**rec, "bbox": extra.get("bbox", [4, 4, 20, 20])} if task == "grounding" else rec

    lines = [line(k) for k in range(3)] + [
        line(3, texts=(LONG_CAPTION,)),  # good: cut to max_words
        line(4, texts=("a red box", 12345)),  # kept; the number is counted (wrong_type) when the dataset is built
        "{this is not json",
        ["a", "list"],
        line(5, image=5),  # wrong type: image path is a number
        line(6, texts="a string, not a list"),  # wrong type
        line(7, texts=("",)),  # no usable caption
        line(8, image="corrupt.jpg"),
        line(9, image="zero.jpg"),
        line(10, image="bomb.png"),
        line(11, image="bomb_header.png"),
        line(12, image="missing.jpg"),
    ]
    line_skips = {"bad_json": 2, "wrong_type": 2, "no_caption": 1}
    item_skips = {"corrupt_image": 2, "image_too_large": 2, "missing_image": 1}
    good = 5
    if task == "grounding":
        lines += [line(13, bbox="4,4,20,20"), line(14, bbox=[4, 4, 0, 20]), line(15, bbox=[4, 4, 20, True]),
                  line(16, bbox=[40, 30, 30, 30])]  # 40x30 at (40, 30) in a 48x40 image: outside
        line_skips |= {"bbox_malformed": 2, "bbox_empty": 1}
        item_skips["bbox_outside_image"] = 1
    _write_split(root, task, lines)
    records = 3 + 2 + 5 + (1 if task == "grounding" else 0)
    return TaskCorpus(root, line_skips, records, {"wrong_type": 1}, item_skips, good)


def write_vqa_folder(root: str | Path) -> TaskCorpus:
    """A VQA task folder (``train`` split) with the fuzz cases; VQA counts a wrong-typed field as ``bad_json``."""
    root = Path(root)
    _write_images(root / "images", 3)

    def line(k: int, image: str | None = None, question: Any = "what colour is it", answers: Any = ("red",)) -> dict:
        return {"image": image or f"good{k % 3}.jpg", "image_id": f"fuzz/{k}", "question_id": k,
                "question": question, "answers": list(answers) if isinstance(answers, tuple) else answers}

    lines = [line(k) for k in range(3)] + [
        line(3, question=LONG_CAPTION),
        "{this is not json", line(4, question=12345), line(5, image=5),  # bad_json x 3 (one not JSON, 2 types)
        line(6, question="???"),  # empty after cleaning: empty_caption
        line(7, answers=()),  # nothing to learn from: no_answer
        line(8, "corrupt.jpg"), line(9, "zero.jpg"), line(10, "bomb.png"), line(11, "bomb_header.png"),
        line(12, "missing.jpg"),
    ]
    _write_split(root, "vqa", lines)
    return TaskCorpus(root, {"bad_json": 3}, 11, {"empty_caption": 1, "no_answer": 1},
                      {"corrupt_image": 2, "image_too_large": 2, "missing_image": 1}, 4)


def write_nlvr2_folder(root: str | Path) -> TaskCorpus:
    """An NLVR2 task folder (``train`` split): a pair with one broken image is skipped under that image's reason."""
    root = Path(root)
    _write_images(root / "images", 3)

    def line(k: int, images: Any = None, sentence: Any = "the left image is red", label: Any = True) -> dict:
        return {"images": images or [f"good{k % 3}.jpg", f"good{(k + 1) % 3}.jpg"], "image_id": f"fuzz/{k}",
                "sentence": sentence, "label": label}

    lines = [line(k) for k in range(3)] + [
        line(3, sentence=LONG_CAPTION),
        "{this is not json", line(4, images=["good0.jpg"]), line(5, images=[1, 2]),  # bad_json x 3
        line(6, sentence=12345),  # no_caption (the sentence is not a string)
        line(7, label="maybe"),  # bad_label
        line(8, sentence="???"),  # empty after cleaning: empty_caption when the item is read
        line(9, images=["good0.jpg", "corrupt.jpg"]), line(10, images=["zero.jpg", "good1.jpg"]),
        line(11, images=["good0.jpg", "bomb.png"]), line(12, images=["bomb_header.png", "good1.jpg"]),
        line(13, images=["missing.jpg", "good1.jpg"]),
    ]
    _write_split(root, "nlvr2", lines)
    return TaskCorpus(root, {"bad_json": 3, "no_caption": 1, "bad_label": 1}, 10, {},
                      {"empty_caption": 1, "corrupt_image": 2, "image_too_large": 2, "missing_image": 1}, 4)


# ------------------------------------------------------------------------------------------------ converter input
@dataclass
class JsonlCorpus:
    """A reference-format jsonl file and what ``data_prep.xvlm_jsonl`` must make of it."""

    path: Path
    kept: int
    skipped: dict[str, int]
    dropped: dict[str, int]


def write_reference_jsonl(root: str | Path) -> JsonlCorpus:
    """``<root>/pretrain.json`` (one JSON object per line) with images under ``<root>/images``."""
    root = Path(root)
    _write_images(root / "images", 3)

    def line(image: str = "good0.jpg", caption: Any = "a red box", elems: list | None = None) -> str:
        out: dict[str, Any] = {"caption": caption, "image_rpath": f"images/{image}"}
        if elems is not None:
            out["elems"] = elems
        return json.dumps(out)

    lines = [line(f"good{k}.jpg", f"a box number {k}") for k in range(3)] + [
        line(caption=LONG_CAPTION),
        line("corrupt.jpg"), line("zero.jpg"), line("bomb.png"), line("bomb_header.png"), line("missing.jpg"),
        "{this is not json",
        line(caption=12345),  # wrong type, the only text: sample skipped (wrong_type)
        line(caption=""),  # empty, the only text: sample skipped (empty_caption)
        line(elems=[{"caption": "a box", "bb": "4,4,20,20"}]),  # region dropped, caption kept
        line(elems=[{"caption": "a box", "bb": [4, 4, 0, 20]}]),
        line(elems=[{"caption": "a box", "bb": [40, 30, 30, 30]}]),
    ]
    path = root / "pretrain.json"
    path.write_text("\n".join(lines) + "\n")
    return JsonlCorpus(path, kept=7,
                       skipped={"unreadable_image": 2, "image_too_large": 2, "missing_image": 1, "bad_line": 1,
                                "wrong_type": 1, "empty_caption": 1},
                       # texts removed, including those of the two skipped caption-only samples
                       dropped={"bbox_malformed": 1, "bbox_empty": 1, "bbox_outside_image": 1, "wrong_type": 1,
                                "empty_caption": 1})


def write_coco_json(root: str | Path) -> JsonlCorpus:
    """A COCO-style caption file (``<root>/captions.json``, image ``<root>/images/good0.jpg``) whose other entries
    have wrong types: an image entry with a size that is not a number, one that is not an object, one whose id is
    ``true``; annotations with a string id, no id, a number instead of an object, a string box; a category that is a
    string; a caption that is a number. Converter ``data_prep.coco``: one image kept with its one good caption."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / "good0.jpg").write_bytes(jpeg(colour(0)))
    doc = {"images": [{"id": 1, "file_name": "good0.jpg", "width": SIZE[0], "height": SIZE[1]},
                      {"id": 2, "file_name": 5, "width": "a", "height": 40}, "not an object", {"id": True}],
           "annotations": [{"image_id": 1, "caption": "a red box"}, {"image_id": 1, "caption": 7},
                           {"image_id": "x", "caption": "a"}, {"caption": "no image id"}, 5,
                           {"image_id": 1, "bbox": "1,2,3,4", "category_id": 1}],
           "categories": [{"id": 1, "name": "box"}, "bad"]}
    path = root / "captions.json"
    path.write_text(json.dumps(doc))
    return JsonlCorpus(path, kept=1, skipped={}, dropped={"bad_annotation": 7, "wrong_type": 1})
