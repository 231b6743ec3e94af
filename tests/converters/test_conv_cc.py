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
    explicit = cc.convert_list(tmp_path / "o3", [tmp_path / "amb.tsv"], images=photo_dir, path_col="0",
                               caption_col="1", **KW)
    assert explicit["skipped"] == {"missing_image": {"count": 1, "examples": ["000000000"]}}


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
