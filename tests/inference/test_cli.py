"""``python -m xvlm_lit.predict``: ground on a real photograph, retrieve with an HTML page, JSON, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import xvlm_lit
from xvlm_lit.predict import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """scikit-image's astronaut (a real 512 x 512 photograph) as a JPEG file."""
    skimage = pytest.importorskip("skimage")
    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).save(path, quality=90)
    return path


def test_ground_on_a_photograph_writes_a_png(tiny_run, photo, tmp_path, capsys):
    out = tmp_path / "box.png"
    texts = ["the woman in the orange suit", "the flag"]
    assert main(["ground", "--ckpt", str(tiny_run["ckpt"]), "--device", "cpu", "--image", str(photo), "--text",
                 *texts, "--out", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (512, 512)
        drawn = img.convert("RGB")
    boxes = xvlm_lit.load(tiny_run["ckpt"], device="cpu").ground(photo, texts)
    assert [b["xyxy"] for b in payload["boxes"]] == [list(b.xyxy) for b in boxes]
    x1, y1 = (round(v) for v in boxes[0].xyxy[:2])
    original = Image.open(photo).convert("RGB")
    assert drawn.getpixel((x1 + 1, round(boxes[0].xyxy[3]) - 1)) != original.getpixel((x1 + 1, y1 + 1))
    assert payload["out"] == str(out) and payload["boxes"][0]["image_size"] == [512, 512]


def test_python_m_entry_point_end_to_end(tiny_run, photo, tmp_path):
    """The real command line in a fresh process (the error paths run in-process below)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    out = tmp_path / "box.png"
    base = [sys.executable, "-m", "xvlm_lit.predict", "ground", "--ckpt", str(tiny_run["ckpt"]), "--device", "cpu"]
    ok = subprocess.run([*base, "--image", str(photo), "--text", "the flag", "--out", str(out)], env=env,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and out.stat().st_size > 1000


def test_retrieve_table_html_and_json(tiny_run, tiny_data, tmp_path, capsys):
    page = tmp_path / "top.html"
    argv = ["retrieve", "--ckpt", str(tiny_run["ckpt"]), "--device", "cpu", "--text", "a red rectangle",
            "--gallery", str(tiny_data["images"]), "-k", "3"]
    assert main([*argv, "--html", str(page)]) == 0
    table = capsys.readouterr().out
    assert "query: a red rectangle" in table and len([ln for ln in table.splitlines() if ".png" in ln]) == 3
    assert page.read_text().count("data:image/jpeg;base64,") == 3
    assert main([*argv, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    matches = payload["queries"][0]["matches"]
    assert payload["direction"] == "text->image" and [m["rank"] for m in matches] == [0, 1, 2]
    captions = tmp_path / "captions.txt"
    captions.write_text("a red rectangle\n\na blue box\n")
    assert main(["retrieve", "--ckpt", str(tiny_run["ckpt"]), "--device", "cpu", "--image",
                 str(next(tiny_data["images"].glob("*.png"))), "--gallery", str(captions), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["direction"] == "image->text"
    assert sorted(m["item"] for m in payload["queries"][0]["matches"]) == ["a blue box", "a red rectangle"]


def test_score_json(tiny_run, tiny_data, capsys):
    images = sorted(str(p) for p in tiny_data["images"].glob("*.png"))[:2]
    assert main(["score", "--ckpt", str(tiny_run["ckpt"]), "--device", "cpu", "--image", *images, "--text", "red",
                 "blue", "green", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["itc"]) == 2 and len(payload["itc"][0]) == 3 and payload["texts"] == ["red", "blue", "green"]


@pytest.mark.parametrize(("argv", "message"), [
    (["caption", "--image", "{img}"], "error: this checkpoint has no caption decoder: fine-tune with "
                                      "experiment=caption_coco"),
    (["answer", "--image", "{img}", "--question", "what?"], "error: this checkpoint has no answer decoder"),
    (["ground", "--image", "{bad}", "--text", "x"], "error: cannot read image"),
    (["score", "--image", "{img}", "--text", "x", "--model", "nonexistent"], "error: model='nonexistent'"),
])
def test_errors_are_one_line(tiny_run, tiny_data, tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    img = next(tiny_data["images"].glob("*.png"))
    argv = [a.format(img=img, bad=bad) for a in argv]
    assert main([argv[0], "--ckpt", str(tiny_run["ckpt"]), "--device", "cpu", *argv[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["score", "--ckpt", str(tmp_path / "x.ckpt"), "--image", "a.png", "--text", "x"]) == 2
    assert capsys.readouterr().err.strip() == f"error: no such checkpoint file: {tmp_path / 'x.ckpt'}"


def test_ground_scale_enlarges_the_picture(tiny_run, tiny_data, tmp_path):
    image = sorted(tiny_data["images"].glob("*.png"))[0]  # 96 x 64
    out = tmp_path / "big.png"
    assert main(["ground", "--ckpt", str(tiny_run["ckpt"]), "--device", "cpu", "--image", str(image), "--text",
                 "red", "blue", "--out", str(out), "--scale", "3"]) == 0
    with Image.open(out) as img:
        assert img.size == (288, 192)
        colours = {img.getpixel((x, y)) for x in range(288) for y in range(192)}
    assert {(230, 25, 75), (0, 130, 200)} <= colours  # one colour per text
    assert main(["ground", "--ckpt", str(tiny_run["ckpt"]), "--image", str(image), "--text", "x", "--out",
                 str(out), "--scale", "0"]) == 2
