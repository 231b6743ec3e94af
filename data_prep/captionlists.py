"""Readers of image-caption lists (TSV/CSV, JSON, JSON lines, parquet) and of img2dataset output folders.

A list gives one image path and its caption(s) per row. Column names are found in a header row or in the json keys
(path: ``image``, ``image_path``, ``path``, ``filepath``, ``file_name``, ``filename``, ``file``, ``image_rpath``,
``img_path``; caption: ``caption``, ``captions``, ``text``, ``title``, ``txt``) or given explicitly (a name, or a
0-based column index for header-less TSV/CSV). A header-less two-column TSV/CSV is read as (path, caption) or
(caption, path), whichever column holds image file names. Parquet needs ``pyarrow``. A ``.json`` file whose top
level is an object is read as parallel arrays ``{"image_urls": [...], "captions": [...], ...}`` (SBU's
``sbu-captions-all.json``), the image being the basename of each url.

Plain-text inputs (TSV/CSV, JSON lines, SBU's url/caption files, img2dataset ``.txt`` captions) are decoded line by
line as UTF-8, and a line that is not valid UTF-8 as Latin-1 (some caption dumps hold Latin-1 lines), so a byte
like ``0xe0`` reads as "à" rather than failing or becoming U+FFFD.
"""

from __future__ import annotations

import csv
import itertools
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.convert import ConvertError
from data_prep.jsonstream import iter_array, iter_object

PATH_KEYS = ("image", "image_path", "path", "filepath", "file_name", "filename", "file", "image_rpath", "img_path")
CAPTION_KEYS = ("caption", "captions", "text", "title", "txt")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
Row = tuple[str, Any]  # (image path, caption str or list of str)
URLS, CAPTIONS = "image_urls", "captions"  # the parallel arrays of SBU's sbu-captions-all.json


def decode_line(line: bytes) -> str:
    """One line of a plain-text file: UTF-8, or Latin-1 when it is not valid UTF-8 (every byte string is)."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def decode_text(data: bytes) -> str:
    """A plain text decoded line by line with :func:`decode_line` (line ends kept)."""
    return "".join(decode_line(line) for line in data.splitlines(keepends=True))


def text_lines(path: str | Path) -> Iterator[str]:
    """The lines of a plain-text file (line ends kept), each decoded with :func:`decode_line`; a UTF-8 byte-order
    mark at the start is dropped."""
    with open(path, "rb") as fp:
        for index, line in enumerate(fp):
            yield decode_line(line[3:] if index == 0 and line.startswith(b"\xef\xbb\xbf") else line)


def url_basename(url: str) -> str:
    """The file name a ``wget``-style download gives an image url (its last path part; "" when there is none)."""
    return url.strip().rstrip("/").rsplit("/", 1)[-1]


def _pick(names: list[str], wanted: str | None, defaults: tuple[str, ...], what: str, where: Path) -> str:
    if wanted is not None:
        if wanted not in names:
            raise ConvertError(f"{where}: no {what} column {wanted!r} (columns: {names})")
        return wanted
    lower = {n.lower(): n for n in names}
    for key in defaults:
        if key in lower:
            return lower[key]
    raise ConvertError(f"{where}: cannot find the {what} column among {names}; name it with --{what}-col")


def _dict_rows(rows: Iterator[dict], path: Path, path_col: str | None, caption_col: str | None) -> Iterator[Row]:
    keys: tuple[str, str] | None = None
    for row in rows:
        if keys is None:
            names = list(row)
            keys = (_pick(names, path_col, PATH_KEYS, "path", path), _pick(names, caption_col, CAPTION_KEYS,
                                                                             "caption", path))
        yield str(row.get(keys[0]) or ""), row.get(keys[1])


def _looks_like_image(value: str) -> bool:
    return value.lower().endswith(IMAGE_EXTS)


def _delimited(path: Path, path_col: str | None, caption_col: str | None) -> Iterator[Row]:
    csv.field_size_limit(2**31 - 1)  # captions can be long; the default limit is 128 KiB
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    reader = csv.reader(text_lines(path), delimiter=delimiter)  # a quoted field may span lines: their ends are kept
    first = next(reader, None)
    if first is None:
        return
    names = [c.strip() for c in first]
    lower = {n.lower() for n in names}
    if (path_col in names or lower & set(PATH_KEYS)) and (caption_col in names or lower & set(CAPTION_KEYS)):
        yield from _dict_rows((dict(zip(names, r, strict=False)) for r in reader), path, path_col, caption_col)
        return
    if path_col is not None and caption_col is not None and path_col.isdigit() and caption_col.isdigit():
        p, c = int(path_col), int(caption_col)
    elif len(first) == 2 and _looks_like_image(first[0]) != _looks_like_image(first[1]):
        p, c = (0, 1) if _looks_like_image(first[0]) else (1, 0)
    else:
        raise ConvertError(f"{path}: no header naming the path/caption columns and the first row does not tell "
                           f"which column is the image; pass --path-col N --caption-col N (0-based)")
    for row in itertools.chain([first], reader):
        yield (row[p] if len(row) > p else ""), (row[c] if len(row) > c else "")


def _parquet(path: Path) -> Iterator[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ConvertError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), or export the list as "
                           f"TSV/JSON lines") from err
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _json_lines(path: Path) -> Iterator[dict]:
    for line in text_lines(path):
        if line.strip():
            yield json.loads(line)


def _first_char(path: Path) -> str:
    """The first non-whitespace character of a text file ("" when there is none)."""
    with open(path, encoding="utf-8-sig", errors="replace") as fp:
        while chunk := fp.read(1 << 12):
            if chunk.strip():
                return chunk.lstrip()[0]
    return ""


def _is_array(value: Any) -> bool:
    return isinstance(value, list | Iterator)  # iter_object gives a streamed array as an iterator


def _parallel_arrays(path: Path) -> Iterator[Row]:
    """Rows of ``{"image_urls": [...], "captions": [...], ...}`` (SBU's ``sbu-captions-all.json``): image = the
    basename of the url. Whichever array comes first is held in memory, the second is streamed beside it."""
    held: tuple[str, list] | None = None
    for key, value in iter_object(path, stream={URLS, CAPTIONS}):
        if key not in (URLS, CAPTIONS):
            continue
        if not _is_array(value):
            raise ConvertError(f"{path}: {key!r} must be an array")
        if held is None:
            held = (key, [url_basename(v) if key == URLS and isinstance(v, str) else v for v in value])
            continue
        n = 0
        for n, item in enumerate(value, 1):
            if n > len(held[1]):
                break
            other = held[1][n - 1]
            yield (other, item) if key == CAPTIONS else (url_basename(item) if isinstance(item, str) else "", other)
        if n != len(held[1]):
            raise ConvertError(f"{path}: {held[0]!r} has {len(held[1])} entries but {key!r} has "
                               f"{'more' if n > len(held[1]) else n}; the arrays must be parallel")
        return
    raise ConvertError(f"{path}: a JSON object without both {URLS!r} and {CAPTIONS!r} arrays; expected a JSON array "
                       f"of objects (one per image) or SBU's sbu-captions-all.json layout")


def read_list(path: str | Path, path_col: str | None = None, caption_col: str | None = None) -> Iterator[Row]:
    """Yield ``(image path, caption(s))`` rows of a list file, in file order (streamed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv", ".txt"):
        yield from _delimited(path, path_col, caption_col)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _dict_rows(_json_lines(path), path, path_col, caption_col)
    elif suffix == ".json" and _first_char(path) == "{":
        yield from _parallel_arrays(path)
    elif suffix == ".json":
        yield from _dict_rows(iter_array(path), path, path_col, caption_col)
    elif suffix == ".parquet":
        yield from _dict_rows(_parquet(path), path, path_col, caption_col)
    else:
        raise ConvertError(f"{path}: unknown list format {suffix!r} (tsv, csv, json, jsonl, parquet)")


# ----------------------------------------------------------------------------------------------- img2dataset
def _caption(text: bytes) -> str:
    return decode_text(text)


def img2dataset_tars(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.tar") if not p.name.startswith("."))


def scan_img2dataset(folder: str | Path) -> Iterator[tuple[str, tuple, str]]:
    """Yield ``(key, image locator, caption)`` for every image of an img2dataset output folder, in order.

    The locator is ``("tar", path, offset, size)`` for the ``webdataset`` output format (``*.tar``) or
    ``("file", path)`` for the ``files`` format (``00000/000000000.jpg`` + ``.txt``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"img2dataset folder not found: {folder}")
    tars = img2dataset_tars(folder)
    if tars:
        for tar_path in tars:
            yield from scan_tar(tar_path)
        return
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not images:
        raise ConvertError(f"{folder}: no *.tar shards and no image files (is it img2dataset output?)")
    for image in images:
        txt = image.with_suffix(".txt")
        yield image.stem, ("file", str(image)), _caption(txt.read_bytes()) if txt.is_file() else ""


def scan_tar(tar_path: Path) -> Iterator[tuple[str, tuple, str]]:
    """``(key, locator, caption)`` of each sample of one img2dataset tar (see :func:`scan_img2dataset`)."""
    current: dict[str, Any] = {}
    with tarfile.open(tar_path, "r") as tar:
        for member in tar:
            if not member.isfile() or "." not in Path(member.name).name:
                continue
            key, ext = member.name.split(".", 1)
            if current and current["key"] != key:
                yield from _tar_sample(current, tar_path)
                current = {}
            current["key"] = key
            if ext.lower() == "txt":
                current["txt"] = _caption(tar.extractfile(member).read())
            elif ("." + ext.lower()) in IMAGE_EXTS:
                current["image"] = ("tar", str(tar_path), member.offset_data, member.size)
    if current:
        yield from _tar_sample(current, tar_path)


def _tar_sample(sample: dict[str, Any], tar_path: Path) -> Iterator[tuple[str, tuple, str]]:
    # a sample without an image member points to a path that does not exist: it is skipped as missing_image
    yield sample["key"], sample.get("image", ("file", f"{tar_path}/{sample['key']}.jpg")), sample.get("txt", "")


def read_locator(locator: tuple) -> str | bytes:
    """The image source (a path, or bytes read from a tar) that a locator points to."""
    if locator[0] == "tar":
        with open(locator[1], "rb") as fp:
            fp.seek(locator[2])
            return fp.read(locator[3])
    return locator[1]
