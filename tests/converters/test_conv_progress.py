"""Converters report progress without a terminal: one line per shard on stderr (count, percent, rate, ETA)."""

from __future__ import annotations

import re

from PIL import Image

from data_prep import convert
from data_prep.samples import Raw

LINE = re.compile(r"demo: shard (\d): (\d+)/5 records \((\d+)%\), \d+\.\d records/s, ETA \d:\d\d:\d\d")


def _raws(tmp_path) -> list[Raw]:
    path = tmp_path / "red.png"
    Image.new("RGB", (32, 24), (200, 0, 0)).save(path)
    return [Raw(key=f"k{i}", image_id=f"demo/{i}", image=str(path), captions=[f"red image {i}"]) for i in range(5)]


def test_one_line_per_shard_without_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(convert, "is_terminal", lambda: False)
    opts = convert.Options(out=tmp_path / "out", source="demo", shard_size=2)
    manifest = convert.run(_raws(tmp_path), convert.identity, opts, total=5)
    assert manifest["counts"]["images"] == 5
    lines = capsys.readouterr().err.strip().splitlines()
    matches = [LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    assert [(m[1], m[2], m[3]) for m in matches] == [("1", "2", "40"), ("2", "4", "80"), ("3", "5", "100")]


def test_no_lines_when_progress_is_off(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(convert, "is_terminal", lambda: False)
    opts = convert.Options(out=tmp_path / "out", source="demo", shard_size=2, progress=False)
    convert.run(_raws(tmp_path), convert.identity, opts, total=5)
    assert capsys.readouterr().err == ""
