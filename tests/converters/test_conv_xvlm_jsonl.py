"""The reference's JSON-lines files: image-text and region lines, base64 or path images."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from data_prep import xvlm_jsonl

KW = {"max_side": 200, "shard_size": 3, "workers": 1, "progress": False}
SPOON = [400, 250, 120, 90]  # magenta on coffee (600x400)
TAIL = [30, 40, 150, 60]  # cyan on the stored pixels of an EXIF orientation-3 (upside down) file


@pytest.fixture
def jsonl(tmp_path, conv):
    root = tmp_path / "ref"
    conv.write_photo(root / "images" / "coffee.jpg", "coffee")
    conv.write_photo(root / "images" / "coffee_box.jpg", "coffee", SPOON)
    conv.write_photo(root / "images" / "cat_flip.jpg", "chelsea", TAIL, conv.CYAN, orientation=3)
    png = conv.write_photo(tmp_path / "rocket.png", "rocket").read_bytes()
    lines = [
        {"caption": "A cup of coffee", "image_rpath": "images/coffee.jpg"},
        {"caption": ["a rocket", "rocket before launch"], "binary": base64.b64encode(png).decode()},
        {"elems": [{"caption": "spoon", "bb": SPOON, "attributes": ["pink"]},
                   {"caption": ["out of the picture"], "bb": [700, 10, 50, 50]},
                   {"caption": "...", "bb": [10, 10, 30, 30]}],
         "caption": "coffee on a table", "image_rpath": "images/coffee_box.jpg"},
        "this line is not json",
        {"caption": "no such file", "image_rpath": "images/missing.jpg"},
        {"caption": "garbage bytes", "binary": base64.b64encode(b"not an image at all").decode()},
        {"elems": [{"caption": "the tail of a cat", "bb": TAIL, "attributes": "striped"}],
         "image_rpath": str(root / "images" / "cat_flip.jpg")},
        {"caption": "   ", "image_rpath": "images/coffee.jpg"},
    ]
    path = root / "pretrain.json"
    text = "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines[:4]) + "\n\n"
    path.write_text(text + "\n".join(json.dumps(x) for x in lines[4:]) + "\n")
    return path


def test_xvlm_jsonl_lines_become_samples(jsonl, tmp_path, conv):
    manifest = xvlm_jsonl.convert_jsonl([str(jsonl)], tmp_path / "out", source="ref", **KW)
    samples = {s["__key__"]: s for s in conv.shard_samples(tmp_path / "out")}
    assert sorted(samples) == ["000-000000000", "000-000000001", "000-000000002", "000-000000007"]
    assert samples["000-000000000"]["json"]["image_id"] == "ref/images/coffee.jpg"  # relative to the file's folder
    assert samples["000-000000001"]["json"]["captions"] == ["a rocket", "rocket before launch"]
    rec = samples["000-000000002"]["json"]
    assert rec["captions"] == ["coffee on a table"]
    assert [(r["captions"], r["attributes"]) for r in rec["regions"]] == [(["spoon"], ["pink"])]
    conv.assert_box_on_colour(samples["000-000000002"], rec["regions"][0]["bbox"])
    cat = samples["000-000000007"]
    assert cat["json"]["regions"][0]["attributes"] == ["striped"]
    conv.assert_box_on_colour(cat, cat["json"]["regions"][0]["bbox"], conv.CYAN)
    assert conv.skipped(manifest) == {"bad_line": 1, "missing_image": 1, "unreadable_image": 1,
                                      "empty_caption": 1}
    assert conv.dropped(manifest) == {"bbox_outside_image": 1, "empty_caption": 2}
    assert manifest["adjusted"] == {"bbox_exif_rotated": 1, "exif_rotated": 1}


def test_xvlm_jsonl_cli(jsonl, tmp_path, capsys):
    assert xvlm_jsonl.main(["--jsonl", str(jsonl), "--out", str(tmp_path / "o"), "--workers", "2",
                            "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "xvlm: 4 images" in out and "bad_line=1" in out


def test_xvlm_jsonl_image_ids_name_the_image_not_the_line(tmp_path, conv):
    """Files with equal names in two folders hold different images: their ids differ. Lines of one image (a captions
    file repeats an image, one caption per line; or the same base64 bytes) share its id."""
    parts = []
    for folder, photo in (("a", "coffee"), ("b", "rocket")):
        conv.write_photo(tmp_path / folder / "img" / "0.jpg", photo, size=(48, 32))
        conv.write_photo(tmp_path / folder / "img" / "1.jpg", photo, size=(32, 48))
        lines = [{"caption": f"{photo} one", "image_rpath": "img/0.jpg"},
                 {"caption": f"{photo} two", "image_rpath": "img/1.jpg"},
                 {"caption": f"{photo} one again", "image_rpath": "img/0.jpg"}]
        parts.append(tmp_path / folder / "part-00000.jsonl")
        parts[-1].write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    png = conv.write_photo(tmp_path / "cat.png", "chelsea", size=(40, 30)).read_bytes()
    binary = base64.b64encode(png).decode()
    other = base64.b64encode(conv.write_photo(tmp_path / "astro.png", "astronaut", size=(30, 30)).read_bytes()).decode()
    with (tmp_path / "b" / "part-00000.jsonl").open("a") as fp:
        for caption, data in (("a cat", binary), ("the same cat", binary), ("an astronaut", other)):
            fp.write(json.dumps({"caption": caption, "binary": data}) + "\n")
    xvlm_jsonl.convert_jsonl([str(p) for p in parts], tmp_path / "out", source="ref", **KW)
    ids = {s["json"]["captions"][0]: s["json"]["image_id"] for s in conv.shard_samples(tmp_path / "out")}
    assert len(ids) == 9
    distinct = {ids[c] for c in ("coffee one", "coffee two", "rocket one", "rocket two", "a cat", "an astronaut")}
    assert len(distinct) == 6  # different images never share an id
    assert ids["coffee one"] == ids["coffee one again"] == "ref/a/img/0.jpg"
    assert ids["rocket one"] == ids["rocket one again"] == "ref/b/img/0.jpg"
    assert ids["a cat"] == ids["the same cat"] == f"ref/sha1-{hashlib.sha1(png).hexdigest()[:16]}"
