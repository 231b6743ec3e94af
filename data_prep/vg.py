"""Visual Genome -> shards: region descriptions, objects with attributes, and region texts as image captions.

    python -m data_prep.vg --images VG_ROOT --image-data image_data.json \\
        --regions region_descriptions.json --objects objects.json --attributes attributes.json \\
        --karpathy dataset_coco.json --out shards/vg

The big files are streamed (never loaded whole): every file lists its images in the order of ``image_data.json``,
so they are read in lock-step and each entry's image id is checked against ``image_data`` (a mismatch stops the
run with an error naming the file and position). Images are looked up by the ``url``'s last two parts
(``VG_ROOT/VG_100K_2/1.jpg``), then ``VG_ROOT/VG_100K{,_2}/<id>.jpg`` and ``VG_ROOT/<id>.jpg``.

Objects come from ``objects.json`` with their attributes joined from ``attributes.json`` by ``object_id`` (or
from ``attributes.json`` alone). Region phrases whose box covers at least ``--caption-min-area`` of the image are
also stored, deduplicated, as whole-image captions (ALBEF-style VG captions: ALBEF kept large-region texts,
deduplicated, minus COCO evaluation images; ``--caption-min-area 1.1`` stores none). VG images that are Karpathy
test/val COCO images (``coco_id``) are left out (``karpathy_eval``) unless ``--include-karpathy-eval``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep import convert
from data_prep.coco import eval_image_ids
from data_prep.jsonstream import iter_array
from data_prep.samples import NO_LIMIT, Raw
from xvlm_lit.data.text import clean_caption

SOURCE = "vg"
CAPTION_MIN_AREA = 0.25
_END = object()


def _entry_id(entry: dict) -> Any:
    return entry.get("image_id", entry.get("id"))


def lockstep(image_data: str | Path, files: dict[str, str | Path]) -> Iterator[tuple[dict, dict[str, dict]]]:
    """Yield ``(image_data entry, {name: that image's entry in each file})``, streaming every file in order."""
    streams = {name: iter_array(path) for name, path in files.items()}
    n = 0
    for n, entry in enumerate(iter_array(image_data), 1):
        image_id, got = _entry_id(entry), {}
        for name, stream in streams.items():
            item = next(stream, _END)
            if item is _END:
                raise convert.ConvertError(f"{files[name]} ends after {n - 1} images, but {image_data} lists more "
                                           f"(image {image_id} is number {n})")
            if _entry_id(item) != image_id:
                raise convert.ConvertError(
                    f"{files[name]}: entry {n} is image {_entry_id(item)} but entry {n} of {image_data} is image "
                    f"{image_id}; the Visual Genome files must list images in the same order (same release?)")
            got[name] = item
        yield entry, got
    for name, stream in streams.items():
        if next(stream, _END) is not _END:
            raise convert.ConvertError(f"{files[name]} has more entries than the {n} images of {image_data}")


def _candidates(root: Path, entry: dict) -> tuple[str, ...]:
    image_id, parts = _entry_id(entry), str(entry.get("url") or "").rstrip("/").split("/")
    names = [str(root / parts[-2] / parts[-1])] if len(parts) >= 2 and parts[-1] else []
    names += [str(root / d / f"{image_id}.jpg") for d in ("VG_100K", "VG_100K_2", "images", ".")]
    return tuple(dict.fromkeys(names))


def _box(item: dict) -> list:
    return [item.get("x"), item.get("y"), item.get("w", item.get("width")), item.get("h", item.get("height"))]


def _objects(got: dict[str, dict]) -> list[dict]:
    with_attrs = got.get("attributes", {}).get("attributes") or []
    attrs = {o.get("object_id"): o.get("attributes") or [] for o in with_attrs}
    objects = (got["objects"].get("objects") or []) if "objects" in got else with_attrs
    out = []
    for obj in objects:
        names = obj.get("names") or [obj.get("name", "")]
        out.append({"bbox": _box(obj), "label": names[0],
                    "attributes": list(dict.fromkeys(attrs.get(obj.get("object_id"), obj.get("attributes") or [])))})
    return out


def _captions(regions: list[dict], width: float, height: float, min_area: float) -> list[str]:
    seen, out = set(), []
    for region in regions:
        w, h = region.get("width") or 0, region.get("height") or 0
        text = region.get("phrase")
        if not isinstance(text, str) or not width or not height or w * h < min_area * width * height:
            continue
        cleaned = clean_caption(text, NO_LIMIT)
        if cleaned and cleaned not in seen:
            seen.add(cleaned)
            out.append(text)
    return out


def to_raw(entry: dict, got: dict[str, dict], root: Path, caption_min_area: float) -> Raw:
    """One image's Raw record from its ``image_data`` entry and its entries in the other files."""
    regions = got.get("regions", {}).get("regions") or []
    width, height = entry.get("width"), entry.get("height")
    return Raw(key=str(_entry_id(entry)), image_id=f"{SOURCE}/{_entry_id(entry)}", image=_candidates(root, entry),
               captions=_captions(regions, width, height, caption_min_area),
               regions=[{"bbox": _box(r), "captions": [r.get("phrase")]} for r in regions],
               objects=_objects(got) if ("objects" in got or "attributes" in got) else [],
               frame=(width, height) if width and height else None)


def convert_vg(images: str | Path, image_data: str | Path, out: str | Path, regions: str | None = None,
               objects: str | None = None, attributes: str | None = None, karpathy: str | None = None,
               include_karpathy_eval: bool = False, caption_min_area: float = CAPTION_MIN_AREA, **kw) -> dict:
    """Convert Visual Genome; ``kw`` are further :class:`data_prep.convert.Options` fields. Returns the manifest."""
    convert.require_dir(images)
    files = {k: v for k, v in (("regions", regions), ("objects", objects), ("attributes", attributes)) if v}
    if not files:
        raise convert.ConvertError("give --regions, --objects and/or --attributes")
    for path in (image_data, *files.values()):
        if not Path(path).is_file():
            raise FileNotFoundError(f"file not found: {path}")
    if karpathy is None and not include_karpathy_eval:
        raise convert.ConvertError("pass --karpathy dataset_coco.json so VG images that are COCO test/val images "
                                   "stay out of the pre-training shards, or --include-karpathy-eval to keep them")
    excluded = set() if include_karpathy_eval else eval_image_ids(karpathy)
    args = {**{k: Path(v).name for k, v in files.items()}, "image_data": Path(image_data).name,
            "karpathy": Path(karpathy).name if karpathy else None, "include_karpathy_eval": include_karpathy_eval,
            "caption_min_area": caption_min_area}
    opts = convert.Options(out=Path(out), source=kw.pop("source", SOURCE), args=args, image_root=str(images), **kw)
    skipped, root = convert.Tally(), Path(images)

    def records() -> Iterator[Raw]:
        for entry, got in lockstep(image_data, files):
            if entry.get("coco_id") in excluded:
                skipped.add("karpathy_eval", str(_entry_id(entry)))
                continue
            yield to_raw(entry, got, root, caption_min_area)

    total = sum(1 for _ in iter_array(image_data))
    return convert.run(records(), convert.identity, opts, total=total, pre_skipped=skipped)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.vg", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--images", required=True, type=Path, help="VG image root (VG_100K/, VG_100K_2/)")
    parser.add_argument("--image-data", required=True, help="image_data.json (ids, sizes, urls, coco_id)")
    parser.add_argument("--regions", help="region_descriptions.json")
    parser.add_argument("--objects", help="objects.json")
    parser.add_argument("--attributes", help="attributes.json")
    parser.add_argument("--karpathy", help="Karpathy dataset_coco.json (VG images in its test/val are excluded)")
    parser.add_argument("--include-karpathy-eval", action="store_true", help="keep VG images of Karpathy test/val")
    parser.add_argument("--caption-min-area", type=float, default=CAPTION_MIN_AREA,
                        help=f"copy region texts covering at least this fraction of the image into the image "
                             f"captions (default {CAPTION_MIN_AREA})")
    convert.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> tuple[dict, Path]:
    kw = convert.common_kwargs(a)
    return convert_vg(a.images, a.image_data, kw.pop("out"), a.regions, a.objects, a.attributes, a.karpathy,
                      a.include_karpathy_eval, a.caption_min_area, **kw), a.out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.vg``."""
    return convert.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
