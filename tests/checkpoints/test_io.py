"""Safe reading: torch weights-only or safetensors; plain extras allowed, everything else refused by name."""

import argparse

import pytest
import torch

from xvlm_lit.checkpoints.io import UnsafeCheckpointError, read_checkpoint, write_safetensors, write_torch


class Custom:
    pass


def test_torch_file_with_plain_extras_loads(tmp_path):
    obj = {"model": {"w": torch.arange(3.0)}, "config": {"lr": 1e-4, "sizes": [1, 2], "name": "x"}, "epoch": 3,
           "args": argparse.Namespace(lr=0.1)}
    write_torch(obj, tmp_path / "a.pth")
    back = read_checkpoint(tmp_path / "a.pth")
    assert torch.equal(back["model"]["w"], obj["model"]["w"]) and back["config"] == obj["config"]
    assert back["args"].lr == 0.1


def test_safetensors_round_trip_with_metadata(tmp_path):
    write_safetensors({"w": torch.ones(2, 2).t()}, tmp_path / "a.safetensors", {"layout": "ours", "tied": {"a": "b"}})
    back = read_checkpoint(tmp_path / "a.safetensors")
    assert torch.equal(back["state_dict"]["w"], torch.ones(2, 2))
    assert back["metadata"] == {"layout": "ours", "tied": '{"a": "b"}'}


def test_custom_class_refused_with_its_name_and_the_file(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": Custom()}, tmp_path / "bad.pth")
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(tmp_path / "bad.pth")
    msg = str(err.value)
    assert "bad.pth" in msg and "Custom" in msg and "weights_only=True" in msg


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.th"):
        read_checkpoint(tmp_path / "absent.th")
