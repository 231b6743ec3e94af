"""``export`` takes the model from the run's own config; a wrong ``--model`` gives a short, readable error."""

import pytest
import torch
from omegaconf import OmegaConf

from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import reference_state_dict
from xvlm_lit.checkpoints.cli import main
from xvlm_lit.checkpoints.importer import format_problems
from xvlm_lit.checkpoints.io import read_checkpoint

from ..conftest import compose_model


@pytest.fixture(scope="module")
def run_ckpt(tmp_path_factory):
    """``<run>/checkpoints/last.ckpt`` of a tiny3 model with ``<run>/.hydra/config.yaml`` beside it."""
    torch.manual_seed(1)
    node = compose_model("xvlm_tiny3", ["bert_path=null"])
    model = build_model(node).eval()
    run = tmp_path_factory.mktemp("run")
    (run / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create({"model": node, "seed": 1}), run / ".hydra" / "config.yaml")
    (run / "checkpoints").mkdir()
    path = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return model, path


def test_export_without_model_uses_the_run_config(run_ckpt, tmp_path, capsys):
    model, ckpt = run_ckpt
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "ref.th")]) == 0
    assert "model from the run config" in capsys.readouterr().err
    ref = read_checkpoint(tmp_path / "ref.th")["model"]
    expect = reference_state_dict(model)
    assert ref.keys() == expect.keys() and all(torch.equal(ref[k], expect[k]) for k in ref)


def test_wrong_model_gives_a_short_list_and_a_hint(run_ckpt, tmp_path):
    _, ckpt = run_ckpt
    with pytest.raises(SystemExit) as err:
        main(["export", "--model", "xvlm_tiny", "--ckpt", str(ckpt), "--out", str(tmp_path / "x.th")])
    text = str(err.value.code)
    lines = text.splitlines()
    assert len(lines) <= 14 and max(map(len, lines)) < 300
    assert "problem(s) importing the checkpoint" in lines[0]
    assert "drop --model xvlm_tiny" in lines[-1]
    assert not (tmp_path / "x.th").exists()


def test_no_run_config_and_no_model_says_what_to_give(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    with pytest.raises(SystemExit, match="give the model the checkpoint was trained with"):
        main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "x.th")])


def test_format_problems_counts_kinds_and_truncates():
    problems = [f"shape mismatch: k{i}" for i in range(25)] + ["missing in source: 'a'"]
    text = format_problems("f.ckpt", problems, hint="try X", show=10)
    lines = text.splitlines()
    assert lines[0] == "f.ckpt: 26 problem(s) importing the checkpoint (25 shape mismatch, 1 missing in source):"
    assert lines[1:11] == [f"  shape mismatch: k{i}" for i in range(10)]
    assert lines[11] == "  ... and 16 more" and lines[12] == "try X"
