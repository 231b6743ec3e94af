"""Conceptual Captions (CC-3M, CC-12M) and other image-caption lists -> caption-only shards.

    python -m data_prep.cc --list cc3m_train.tsv --images CC3M_ROOT --out shards/cc3m
    python -m data_prep.cc --img2dataset cc3m_img2dataset/ --out shards/cc3m          # re-shard img2dataset output
    python -m data_prep.cc --img2dataset cc3m_img2dataset/ --index-only --out cc3m_img2dataset/   # read as-is
    python -m data_prep.cc --source cc12m --list cc12m.parquet --images CC12M_ROOT --out shards/cc12m

``--list`` takes TSV/CSV (with a header naming the columns, or two columns: path and caption in either order),
JSON (an array of objects), JSON lines, or parquet (needs pyarrow) with an image path and a caption (or a list of
captions) per row; relative paths are resolved against ``--images`` (default: the list's folder; when given it
must exist). Text lists are decoded per line as UTF-8 with a Latin-1 fallback. Records keep the order of the list
(then of the next list), so shards are deterministic.

``--img2dataset`` reads an img2dataset output folder (``webdataset`` format ``*.tar`` with ``.jpg`` + ``.txt``, or
the ``files`` format) and re-shards it with resized images and schema json. ``--index-only`` instead leaves the
folder as it is (training reads img2dataset shards directly as a caption-only source) and only writes a
``manifest.json`` describing it into ``--out``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep import convert
from data_prep.captionlists import img2dataset_tars, read_list, read_locator, scan_img2dataset, scan_tar
from data_prep.samples import Raw, as_list, normalise_text
from data_prep.shards import Manifest

SOURCE = "cc3m"
Item = tuple[str, str, tuple, Any]  # (key, image_id, locator, captions)


def to_raw(item: Item) -> Raw:
    """A caption-only Raw record (runs in the workers: reads tar members there)."""
    key, image_id, locator, captions = item
    return Raw(key=key, image_id=image_id, image=read_locator(locator), captions=as_list(captions))


def list_items(lists: list[str | Path], images: str | Path | None, source: str, path_col: str | None = None,
               caption_col: str | None = None) -> Iterator[Item]:
    """Records of image-caption list files, numbered in order across the files."""
    index = 0
    for list_path in lists:
        root = Path(images) if images else Path(list_path).parent
        for path, captions in read_list(list_path, path_col, caption_col):
            key = f"{index:09d}"
            full = path if not path or os.path.isabs(path) else str(root / path)
            yield key, f"{source}/{key}", ("file", full or f"{root}/<empty path in row {index}>"), captions
            index += 1


def image_roots(lists: list[str | Path], images: str | Path | None, img2dataset: str | Path | None = None) -> str:
    """Where the images of a run are looked up, in words (for error messages)."""
    roots = [str(images)] if images and lists else [f"{Path(p).parent} (the folder of {Path(p).name})" for p in lists]
    roots += [f"the img2dataset folder {img2dataset}"] if img2dataset else []
    return ", ".join(dict.fromkeys(roots))


def img2dataset_items(folder: str | Path, source: str) -> Iterator[Item]:
    """Records of an img2dataset output folder (its keys are kept)."""
    for key, locator, caption in scan_img2dataset(folder):
        yield convert.safe_key(key), f"{source}/{key}", locator, caption


def convert_list(out: str | Path, lists: list[str] = (), images: str | None = None, img2dataset: str | None = None,
                 source: str = SOURCE, path_col: str | None = None, caption_col: str | None = None, **kw) -> dict:
    """Convert list files and/or an img2dataset folder; ``kw`` are further Options fields. Returns the manifest."""
    if not lists and not img2dataset:
        raise convert.ConvertError("give --list and/or --img2dataset")
    convert.require_dir(images)
    args = {"lists": [Path(p).name for p in lists], "img2dataset": Path(img2dataset).name if img2dataset else None,
            "path_col": path_col, "caption_col": caption_col}
    opts = convert.Options(out=Path(out), source=source, args=args, image_root=image_roots(lists, images, img2dataset),
                           **kw)

    def items() -> Iterator[Item]:
        if lists:
            yield from list_items(lists, images, source, path_col, caption_col)
        if img2dataset:
            yield from img2dataset_items(img2dataset, source)

    return convert.run(items(), to_raw, opts)


def index_img2dataset(folder: str | Path, out: str | Path, source: str = SOURCE) -> dict[str, Any]:
    """Describe an img2dataset folder without rewriting it: ``out/manifest.json`` with counts and shard sizes
    (``args.read_as_is`` true, ``args.folder`` the folder), for training to read the folder as-is."""
    folder = Path(folder)
    manifest, skipped = Manifest(source, args={"read_as_is": True, "folder": str(folder.resolve())}), convert.Tally()
    for tar_path in img2dataset_tars(folder):
        n = 0
        for key, locator, caption in scan_tar(tar_path):
            if locator[0] != "tar":
                skipped.add("missing_image", key)
            elif not normalise_text(caption):
                skipped.add("empty_caption", key)
            else:
                n += 1
                manifest.counts["images"] += 1
                manifest.counts["captions"] += 1
        manifest.add_shard(tar_path.name, n, tar_path.stat().st_size)
    if not manifest.shards:
        raise convert.ConvertError(f"{folder}: --index-only needs img2dataset's webdataset output (*.tar)")
    if manifest.counts["images"] == 0 and skipped.total():
        raise convert.ConvertError(f"{folder}: no usable sample in its shards (skipped: "
                                   + ", ".join(f"{k}={v['count']}" for k, v in skipped.to_dict().items())
                                   + "); no manifest written. Did img2dataset download any image?")
    manifest.skipped = skipped.to_dict()
    Path(out).mkdir(parents=True, exist_ok=True)
    manifest.write(Path(out) / convert.MANIFEST)
    return manifest.to_dict()


def add_list_args(parser: argparse.ArgumentParser, source: str) -> None:
    parser.add_argument("--list", nargs="*", default=[], dest="lists",
                        help="list files (tsv/csv/json/jsonl/parquet; a json object of parallel 'image_urls' / "
                             "'captions' arrays is read as SBU's sbu-captions-all.json)")
    parser.add_argument("--images", help="root of relative image paths (default: each list's folder)")
    parser.add_argument("--path-col", help="image path column (name, or 0-based index for header-less TSV/CSV)")
    parser.add_argument("--caption-col", help="caption column (name, or 0-based index for header-less TSV/CSV)")
    parser.add_argument("--img2dataset", help="img2dataset output folder (webdataset or files format)")
    parser.add_argument("--index-only", action="store_true",
                        help="with --img2dataset: write only manifest.json describing the folder (read as-is)")
    parser.add_argument("--source", default=source, help=f"source name: shard prefix and image ids (default {source})")


def build_parser(source: str = SOURCE, prog: str = "python -m data_prep.cc",
                 doc: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawTextHelpFormatter)
    add_list_args(parser, source)
    convert.add_common_args(parser)
    return parser


def convert_args(a: argparse.Namespace) -> tuple[dict, Path]:
    """Run the conversion a parsed command line asks for."""
    if a.index_only:
        if not a.img2dataset:
            raise convert.ConvertError("--index-only needs --img2dataset")
        return index_img2dataset(a.img2dataset, a.out, a.source), a.out
    kw = convert.common_kwargs(a)
    return convert_list(kw.pop("out"), a.lists, a.images, a.img2dataset, a.source, a.path_col, a.caption_col,
                        **kw), a.out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.cc``."""
    return convert.cli(build_parser(), convert_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
