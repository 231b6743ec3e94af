"""``python -m xvlm_lit.checkpoints export|inspect``."""

import os
import subprocess
import sys

import pytest
import torch

from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import init_from, reference_state_dict
from xvlm_lit.checkpoints.cli import REPO_CONF, main
from xvlm_lit.checkpoints.io import read_checkpoint

from ..conftest import compose_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model and a Lightning-style checkpoint of it."""
    torch.manual_seed(0)
    model = build_model(compose_model("xvlm_tiny3", ["bert_path=null"])).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = tmp_path_factory.mktemp("run") / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 1,
                "hyper_parameters": {"lr": 1e-4}}, path)
    return model, path


def test_export_reference_and_safetensors(trained, tmp_path, capsys):
    model, ckpt = trained
    assert main(["export", "--model", "xvlm_tiny3", "--ckpt", str(ckpt), "--out", str(tmp_path / "ref.th")]) == 0
    ref = read_checkpoint(tmp_path / "ref.th")["model"]
    expect = reference_state_dict(model)
    assert ref.keys() == expect.keys() and all(torch.equal(ref[k], expect[k]) for k in ref)

    yaml = REPO_CONF / "model" / "xvlm_tiny3.yaml"
    assert main(["export", "--config-name", str(yaml), "--ckpt", str(tmp_path / "ref.th"),
                 "--out", str(tmp_path / "ours.safetensors"), "--format", "safetensors"]) == 0
    assert "wrote" in capsys.readouterr().out
    torch.manual_seed(5)
    back = build_model(compose_model("xvlm_tiny3", ["bert_path=null"])).eval()
    init_from(back, tmp_path / "ours.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_export_with_overrides_resizes(trained, tmp_path):
    _, ckpt = trained
    main(["export", "--model", "xvlm_tiny3", "--ckpt", str(ckpt), "--out", str(tmp_path / "ref192.th"),
          "vision.image_size=192", "model.vision.window_size=6"])
    ref = read_checkpoint(tmp_path / "ref192.th")["model"]
    assert ref["vision_encoder.layers.0.blocks.0.attn.relative_position_bias_table"].shape == (121, 2)
    assert ref["vision_encoder.layers.0.blocks.1.attn_mask"].shape == (64, 36, 36)


def test_inspect_runs_as_a_module(trained):
    _, ckpt = trained
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-m", "xvlm_lit.checkpoints", "inspect", str(ckpt)], capture_output=True,
                         text=True, env=env, timeout=300, check=True).stdout
    head = out.splitlines()[0]
    assert "lightning, ours layout" in head and "203 tensors" in head
    assert "vision_proj.weight\t[128, 128]\tfloat32" in out


def test_unknown_model_name_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="conf/model/nope.yaml"):
        main(["export", "--model", "nope", "--ckpt", "x", "--out", str(tmp_path / "o.th")])
