"""How the converters fail: a run that keeps nothing, a missing --images folder, a refused re-run."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from data_prep import cc, coco, objects365, openimages, sbu, vg, xvlm_jsonl

CLI = ["--workers", "1", "--no-progress", "--max-side", "64", "--shard-size", "2"]


def _objects365_release(tmp_path: Path, conv) -> tuple[Path, Path]:
    """An Objects365-style annotation file and its image root in the released layout (``train/patch0/``)."""
    root = tmp_path / "objects365"
    names = [f"images/v1/patch0/objects365_v1_0000000{i}.jpg" for i in (1, 2, 3)]
    for name in names:
        conv.write_photo(root / "train" / "patch0" / Path(name).name, "coffee", size=(64, 48))
    doc = {"images": [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names, 1)],
           "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [8, 8, 20, 16]} for i in (1, 2, 3)],
           "categories": [{"id": 1, "name": "Cup"}]}
    ann = tmp_path / "zhiyuan_objv2_train.json"
    ann.write_text(json.dumps(doc))
    return ann, root


def test_zero_kept_is_an_error_naming_the_image_root(tmp_path, conv, capsys):
    ann, root = _objects365_release(tmp_path, conv)
    wrong = tmp_path / "downloads"  # exists, but the images are not there
    wrong.mkdir()
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        objects365.main(["--annotations", str(ann), "--images", str(wrong), "--out", str(out), *CLI])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no sample kept of 3 record(s)" in err and "missing_image=3" in err
    assert f"searched under {wrong}" in err and "Check --images" in err
    assert f"tried {wrong}/images/v1/patch0/objects365_v1_00000001.jpg" in err  # an example of the paths tried
    assert not (out / "manifest.json").exists() and not list(out.glob("*.tar"))
    failed = json.loads((out / "manifest.failed.json").read_text())
    assert failed["skipped"]["missing_image"]["count"] == 3 and failed["counts"]["images"] == 0
    # the empty shards were not kept: a re-run with the right folder converts everything
    assert objects365.main(["--annotations", str(ann), "--images", str(root), "--out", str(out), *CLI]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["images"] == 3 and manifest["skipped"] == {}
    assert not (out / "manifest.failed.json").exists()


def test_zero_kept_other_reason_names_it(tmp_path, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (images / name).write_bytes(b"\xff\xd8\xff truncated download")
    lst = tmp_path / "list.tsv"
    lst.write_text("image\tcaption\na.jpg\ta cat\nb.jpg\ta dog\n")
    with pytest.raises(SystemExit) as exc:
        cc.main(["--list", str(lst), "--images", str(images), "--out", str(tmp_path / "out"), *CLI])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "no sample kept of 2 record(s)" in err and "unreadable_image" in err and "do not decode" in err


def test_index_only_without_any_image_is_an_error(tmp_path, capsys):
    folder = tmp_path / "i2d"
    folder.mkdir()
    with tarfile.open(folder / "00000.tar", "w") as tar:
        info = tarfile.TarInfo("000000000.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"a cat"))
    with pytest.raises(SystemExit) as exc:
        cc.main(["--img2dataset", str(folder), "--index-only", "--out", str(folder), "--no-progress"])
    assert exc.value.code == 2 and "no usable sample" in capsys.readouterr().err
    assert not (folder / "manifest.json").exists()


def _inputs(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name in ("ann.json", "list.tsv", "urls.txt", "caps.txt", "boxes.csv", "classes.csv", "ref.jsonl"):
        files[name] = tmp_path / name
        files[name].write_text("")
    return files


CONVERTERS = {
    "objects365": (objects365, lambda f: ["--annotations", str(f["ann.json"])]),
    "coco": (coco, lambda f: ["--captions", str(f["ann.json"]), "--include-karpathy-eval"]),
    "vg": (vg, lambda f: ["--image-data", str(f["ann.json"]), "--regions", str(f["ann.json"]),
                          "--include-karpathy-eval"]),
    "cc": (cc, lambda f: ["--list", str(f["list.tsv"])]),
    "sbu": (sbu, lambda f: ["--urls", str(f["urls.txt"]), "--captions", str(f["caps.txt"])]),
    "sbu-list": (sbu, lambda f: ["--list", str(f["list.tsv"])]),
    "openimages": (openimages, lambda f: ["--boxes", str(f["boxes.csv"]), "--classes", str(f["classes.csv"])]),
    "xvlm_jsonl": (xvlm_jsonl, lambda f: ["--jsonl", str(f["ref.jsonl"])]),
}


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_missing_images_folder_is_an_error_up_front(name, tmp_path, capsys):
    module, args = CONVERTERS[name]
    missing = tmp_path / "no_such_folder"
    with pytest.raises(SystemExit) as exc:
        module.main([*args(_inputs(tmp_path)), "--images", str(missing), "--out", str(tmp_path / "out"), *CLI])
    assert exc.value.code == 2
    assert f"--images {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_refused_rerun_leaves_finished_work_untouched(tmp_path, conv, capsys):
    ann, root = _objects365_release(tmp_path, conv)
    out = tmp_path / "out"
    base = ["--annotations", str(ann), "--images", str(root), "--out", str(out), "--workers", "1", "--no-progress",
            "--max-side", "64"]
    assert objects365.main([*base, "--shard-size", "2"]) == 0
    before = conv.tree_bytes(out)
    assert {"manifest.json", "objects365-000000.tar", "objects365-000001.tar", "parts/objects365-000000.json",
            "parts/objects365-000001.json"} <= set(before)
    for changed in (["--shard-size", "3"], ["--shard-size", "2", "--jpeg-quality", "70"]):
        with pytest.raises(SystemExit) as exc:
            objects365.main([*base, *changed])
        assert exc.value.code == 2 and "other settings" in capsys.readouterr().err
        assert conv.tree_bytes(out) == before
