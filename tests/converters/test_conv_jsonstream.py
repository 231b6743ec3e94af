"""The incremental JSON reader: same values as json.load, whatever the chunk size, with clear errors."""

from __future__ import annotations

import io
import json
import random

import pytest

from data_prep.jsonstream import JsonStreamError, iter_array, iter_object


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice([0, -7, 12345678901234567890, 3.25, -1e-7, 6.02e23])
    if kind == 1:
        return rng.choice(["", "plain", 'quo"te', "back\\slash", "uni ☃ é", "new\nline", "[{,:}]"])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.randrange(10 ** rng.randrange(1, 12))
    if kind in (4, 5):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randrange(4))}


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 16])
@pytest.mark.parametrize("indent", [None, 2])
def test_jsonstream_array_matches_json_load(chunk, indent):
    rng = random.Random(chunk)
    values = [_random_value(rng) for _ in range(200)]
    text = json.dumps(values, indent=indent, ensure_ascii=False)
    assert list(iter_array(io.StringIO(text), chunk=chunk)) == values


@pytest.mark.parametrize("text", ["[]", " [ ] ", "[1]", "[ 1 , 2 ]\n"])
def test_jsonstream_small_arrays(text):
    assert list(iter_array(io.StringIO(text), chunk=1)) == json.loads(text)


def test_jsonstream_object_streams_chosen_members(tmp_path):
    doc = {"info": {"year": 2014}, "images": [{"id": i} for i in range(50)], "annotations": [[i] for i in range(9)],
           "categories": [{"id": 1, "name": "cup"}]}
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc, indent=1))
    seen = {}
    for key, value in iter_object(path, stream={"images", "annotations"}, chunk=5):
        if key == "images":
            seen[key] = [next(value)]  # leaving the rest unread is fine
        elif key == "annotations":
            assert not isinstance(value, list)
            seen[key] = list(value)
        else:
            seen[key] = value
    assert seen == {"info": {"year": 2014}, "images": [{"id": 0}], "annotations": doc["annotations"],
                    "categories": doc["categories"]}


@pytest.mark.parametrize("text, match", [("{}", "expected one of '\\['"), ("[1, 2", "expected one of"),
                                         ("[1 2]", "expected one of"), ("[1, nope]", "invalid JSON"),
                                         ("[1] [2]", "unexpected data")])
def test_jsonstream_errors_name_the_position(text, match):
    with pytest.raises(JsonStreamError, match=match) as err:
        list(iter_array(io.StringIO(text), chunk=2))
    assert "at character" in str(err.value)
