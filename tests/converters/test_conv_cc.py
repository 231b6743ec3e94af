"""Caption-list converters (cc, sbu): TSV/CSV/JSON/JSONL lists, SBU's url/caption files, img2dataset folders."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from data_prep import cc, convert, sbu

KW = {"max_side": 128, "shard_size": 3, "workers": 1, "progress": False}


@pytest.fixture
def photo_dir(tmp_path, conv) -> Path:
    root = tmp_path / "imgs"
    conv.write_photo(root / "coffee.jpg", "coffee")
    conv.write_photo(root / "sub" / "rocket.png", "rocket")
    conv.write_photo(root / "cat_exif.jpg", "chelsea", orientation=8)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    return root


def _tsv(path: Path, rows: list[tuple[str, str]], header: str | None) -> Path:
    lines = ([header] if header else []) + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


ROWS = [("coffee.jpg", "A cup of coffee"), ("sub/rocket.png", "A rocket on the launch pad"),
        ("missing.jpg", "this file is gone"), ("broken.jpg", "a broken file"), ("cat_exif.jpg", "a cat, sideways"),
        ("coffee.jpg", "?!...")]


def test_cc_tsv_list_with_header(photo_dir, tmp_path, conv):
    lst = _tsv(photo_dir / "train.tsv", ROWS, "filepath\tcaption")
    manifest = cc.convert_list(tmp_path / "out", [lst], **KW)
    samples = conv.shard_samples(tmp_path / "out")
    assert [s["json"]["captions"] for s in samples] == [["A cup of coffee"], ["A rocket on the launch pad"],
                                                       ["a cat, sideways"]]
    assert [s["__key__"] for s in samples] == ["000000000", "000000001", "000000004"]
    assert all(max(s["json"]["width"], s["json"]["height"]) == 128 for s in samples)
    assert conv.skipped(manifest) == {"missing_image": 1, "unreadable_image": 1, "empty_caption": 1}
    assert conv.dropped(manifest) == {"empty_caption": 1}
    assert manifest["adjusted"] == {"exif_rotated": 1}
    assert [s["name"] for s in manifest["shards"]] == ["cc3m-000000.tar", "cc3m-000001.tar"]


def test_cc_exif_rotated_image_is_stored_upright(photo_dir, tmp_path, conv):
    cc.convert_list(tmp_path / "out", [_tsv(photo_dir / "l.tsv", [ROWS[4]], "image\ttext")], **KW)
    (sample,) = conv.shard_samples(tmp_path / "out")
    stored = conv.image_of(sample)
    upright = ImageOps.exif_transpose(Image.open(photo_dir / "cat_exif.jpg"))
    assert upright.size == (300, 451) and stored.shape[:2] == (128, 85)  # portrait after rotation
    expected = np.asarray(upright.convert("RGB").resize((85, 128), Image.BICUBIC)).astype(int)
    assert np.abs(stored - expected).mean() < 6


def test_cc_headerless_json_jsonl_lists(photo_dir, tmp_path, conv):
    swapped = _tsv(photo_dir / "noheader.tsv", [(c, p) for p, c in ROWS[:2]], None)
    as_json = photo_dir / "l.json"
    as_json.write_text(json.dumps([{"image": "coffee.jpg", "caption": ["first caption", "second one"]}]))
    as_jsonl = photo_dir / "l.jsonl"
    as_jsonl.write_text(json.dumps({"file_name": str(photo_dir / "sub/rocket.png"), "text": "absolute path"}) + "\n")
    manifest = cc.convert_list(tmp_path / "out", [swapped, as_json, as_jsonl], source="cc12m", **KW)
    recs = [s["json"] for s in conv.shard_samples(tmp_path / "out")]
    assert [r["captions"] for r in recs] == [["A cup of coffee"], ["A rocket on the launch pad"],
                                            ["first caption", "second one"], ["absolute path"]]
    assert [r["image_id"] for r in recs] == [f"cc12m/00000000{i}" for i in range(4)]
    assert manifest["source"] == "cc12m" and manifest["skipped"] == {}
    (tmp_path / "amb.tsv").write_text("a\tb\n")
    with pytest.raises(convert.ConvertError, match="--path-col"):
        cc.convert_list(tmp_path / "o2", [tmp_path / "amb.tsv"], **KW)
    with pytest.raises(convert.ConvertError, match="missing_image=1"):  # column 0 ("a") taken as the path
        cc.convert_list(tmp_path / "o3", [tmp_path / "amb.tsv"], images=photo_dir, path_col="0", caption_col="1",
                        **KW)
    failed = json.loads((tmp_path / "o3" / "manifest.failed.json").read_text())
    assert failed["skipped"] == {"missing_image": {"count": 1, "examples": ["000000000"]}}


def test_cc_parquet_needs_pyarrow(tmp_path, monkeypatch):
    # whether or not pyarrow is installed, make its import fail (a None entry in sys.modules raises ImportError)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "l.parquet").write_bytes(b"PAR1")
    with pytest.raises(convert.ConvertError, match=r"l\.parquet: reading parquet needs pyarrow"):
        cc.convert_list(tmp_path / "out", [tmp_path / "l.parquet"], **KW)


def _img2dataset(folder: Path, photo_dir: Path) -> Path:
    folder.mkdir(parents=True)
    members = [("000000000.jpg", (photo_dir / "coffee.jpg").read_bytes()), ("000000000.txt", b"coffee from a shard"),
               ("000000000.json", b'{"status": "success"}'), ("000000001.txt", b"caption without its image"),
               ("000000002.jpg", (photo_dir / "cat_exif.jpg").read_bytes()), ("000000002.txt", b"   ")]
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / "00000_stats.json").write_text("{}")
    return folder


def test_cc_img2dataset_is_resharded_or_indexed(photo_dir, tmp_path, conv):
    folder = _img2dataset(tmp_path / "i2d", photo_dir)
    manifest = cc.convert_list(tmp_path / "out", img2dataset=str(folder), **KW)
    (sample,) = conv.shard_samples(tmp_path / "out")
    assert sample["__key__"] == "000000000" and sample["json"]["captions"] == ["coffee from a shard"]
    assert conv.skipped(manifest) == {"missing_image": 1, "empty_caption": 1}
    index = cc.index_img2dataset(folder, folder)
    assert index["counts"]["images"] == 1 and index["shards"][0]["name"] == "00000.tar"
    assert index["args"]["read_as_is"] and (folder / "manifest.json").is_file()


def test_cc_img2dataset_files_format(photo_dir, tmp_path, conv):
    folder = tmp_path / "files" / "00000"
    folder.mkdir(parents=True)
    (folder / "000000007.jpg").write_bytes((photo_dir / "coffee.jpg").read_bytes())
    (folder / "000000007.txt").write_text("a cup")
    cc.convert_list(tmp_path / "out", img2dataset=str(tmp_path / "files"), **KW)
    assert [s["__key__"] for s in conv.shard_samples(tmp_path / "out")] == ["000000007"]


def test_sbu_url_caption_files_and_cli(photo_dir, tmp_path, conv, capsys):
    urls = tmp_path / "SBU_captioned_photo_dataset_urls.txt"
    caps = tmp_path / "SBU_captioned_photo_dataset_captions.txt"
    urls.write_text("http://static.flickr.com/1/coffee.jpg\nhttp://static.flickr.com/2/none_here.jpg\n")
    caps.write_text("Coffee in the morning sun\nnothing to see\n")
    assert sbu.main(["--urls", str(urls), "--captions", str(caps), "--images", str(photo_dir), "--out",
                     str(tmp_path / "sbu"), "--workers", "1", "--no-progress", "--max-side", "64"]) == 0
    (sample,) = conv.shard_samples(tmp_path / "sbu")
    assert sample["json"]["image_id"] == "sbu/000000000" and sample["json"]["source"] == "sbu"
    assert "sbu: 1 images" in capsys.readouterr().out
    caps.write_text("only one line\n")
    with pytest.raises(convert.ConvertError, match="different numbers of lines"):
        sbu.convert_sbu(tmp_path / "sbu2", str(urls), str(caps), str(photo_dir), **KW)
    with pytest.raises(SystemExit) as exc:
        cc.main(["--help"])
    assert exc.value.code == 0 and "--img2dataset" in capsys.readouterr().out


def test_sbu_latin1_lines_are_decoded_not_replaced(tmp_path, conv):
    """SBU's published files: a line that is not UTF-8 is read as Latin-1 (b"caf\\xe0" -> "cafà", not U+FFFD),
    in the captions file and in the urls file (a Latin-1 file name)."""
    images = tmp_path / "sbu"
    conv.write_photo(images / "4385058960_b0f291553e.jpg", "coffee", size=(48, 32))
    conv.write_photo(images / "\u00e9t\u00e9.jpg", "rocket", size=(48, 32))
    conv.write_photo(images / "2.jpg", "chelsea", size=(48, 32))
    urls = tmp_path / "SBU_captioned_photo_dataset_urls.txt"
    caps = tmp_path / "SBU_captioned_photo_dataset_captions.txt"
    urls.write_bytes(b"http://static.flickr.com/2723/4385058960_b0f291553e.jpg\n"
                     b"http://static.flickr.com/1/\xe9t\xe9.jpg\nhttp://static.flickr.com/3/2.jpg\n")
    caps.write_bytes(b"caf\xe0 on the table\n" + "na\u00efve utf-8 caf\u00e9\n".encode() + b"a cat\r\n")
    manifest = sbu.convert_sbu(tmp_path / "out", str(urls), str(caps), str(images), **KW)
    assert manifest["skipped"] == {}
    captions = [s["json"]["captions"] for s in conv.shard_samples(tmp_path / "out")]
    assert captions == [["caf\u00e0 on the table"], ["na\u00efve utf-8 caf\u00e9"], ["a cat"]]


def test_sbu_captions_all_json_parallel_arrays(tmp_path, conv, capsys):
    """The single-file release ``sbu-captions-all.json``: one object of parallel arrays, image = url basename."""
    images = tmp_path / "sbu"
    conv.write_photo(images / "11_aa.jpg", "coffee", size=(48, 32))
    conv.write_photo(images / "22_bb.jpg", "rocket", size=(48, 32))
    doc = {"image_urls": ["http://static.flickr.com/1/11_aa.jpg", "http://static.flickr.com/2/22_bb.jpg",
                          "http://static.flickr.com/3/33_cc.jpg"],
           "captions": ["Coffee in the morning", "A rocket \u00e0 la launch", "not downloaded"],
           "user_ids": ["1@N00", "2@N00", "3@N00"]}
    path = tmp_path / "sbu-captions-all.json"
    path.write_text(json.dumps(doc))
    assert sbu.main(["--list", str(path), "--images", str(images), "--out", str(tmp_path / "out"), "--workers", "1",
                     "--no-progress", "--max-side", "64"]) == 0
    recs = [s["json"] for s in conv.shard_samples(tmp_path / "out")]
    assert [r["captions"] for r in recs] == [["Coffee in the morning"], ["A rocket \u00e0 la launch"]]
    assert [r["image_id"] for r in recs] == ["sbu/000000000", "sbu/000000001"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["skipped"]["missing_image"]["count"] == 1
    assert str(images / "33_cc.jpg") in manifest["skipped_detail"]["missing_image"]
    # the member order does not matter (captions first: held, urls streamed beside them)
    reordered = tmp_path / "reordered.json"
    reordered.write_text(json.dumps({k: doc[k] for k in ("user_ids", "captions", "image_urls")}))
    cc.convert_list(tmp_path / "out2", [reordered], images=str(images), source="sbu", **KW)
    assert [s["json"]["captions"] for s in conv.shard_samples(tmp_path / "out2")] == [r["captions"] for r in recs]
    uneven = tmp_path / "uneven.json"
    uneven.write_text(json.dumps({"image_urls": doc["image_urls"], "captions": doc["captions"][:2]}))
    with pytest.raises(convert.ConvertError, match="'image_urls' has 3 entries but 'captions' has 2"):
        cc.convert_list(tmp_path / "out3", [uneven], images=str(images), **KW)
    (tmp_path / "other.json").write_text(json.dumps({"images": []}))
    with pytest.raises(convert.ConvertError, match="sbu-captions-all.json layout"):
        cc.convert_list(tmp_path / "out4", [tmp_path / "other.json"], images=str(images), **KW)


def test_latin1_captions_in_tsv_and_img2dataset_txt(photo_dir, tmp_path, conv):
    """Plain-text captions elsewhere get the same per-line fallback: a TSV list (which failed with
    UnicodeDecodeError) and img2dataset ``.txt`` members (which became U+FFFD)."""
    lst = photo_dir / "latin1.tsv"
    lst.write_bytes(b"image\tcaption\ncoffee.jpg\tcaf\xe9 cr\xe8me\n" + "sub/rocket.png\tfus\u00e9e\n".encode())
    cc.convert_list(tmp_path / "out", [lst], **KW)
    assert [s["json"]["captions"] for s in conv.shard_samples(tmp_path / "out")] == [["caf\u00e9 cr\u00e8me"],
                                                                                    ["fus\u00e9e"]]
    folder = tmp_path / "i2d"
    folder.mkdir()
    members = [("000000000.jpg", (photo_dir / "coffee.jpg").read_bytes()), ("000000000.txt", b"caf\xe0 noir")]
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cc.convert_list(tmp_path / "out2", img2dataset=str(folder), **KW)
    assert [s["json"]["captions"] for s in conv.shard_samples(tmp_path / "out2")] == [["caf\u00e0 noir"]]
