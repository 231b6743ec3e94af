"""2 gloo processes, each holding only its shard of images (7 images: 4 + 3), give exactly the 1-process result."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.xdist_group("distributed")

WORKER = Path(__file__).with_name("retrieval_worker.py")
W = runpy.run_path(str(WORKER))  # not as __main__: only the definitions


def two_ranks_and_one_process(tmp_path: Path) -> tuple[list[dict], dict]:
    """Each rank's results (2 gloo processes) and the 1-process results, computed while the ranks run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), "2", str(tmp_path / "init"), str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        single = {name: W["run_config"](name, 0, 1) for name in W["CONFIGS"]}
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    errors = [f"rank {r}: {err[-2000:]}" for r, (p, (_, err)) in enumerate(zip(procs, outs, strict=True))
              if p.returncode != 0]
    assert not errors, "\n".join(errors)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)], single


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return two_ranks_and_one_process(tmp_path_factory.mktemp("retrieval_dist"))


@pytest.mark.parametrize("name", list(W["CONFIGS"]))
def test_two_ranks_equal_one_process(results, name):
    ranks, single = results
    ref = single[name]
    for out in (r[name] for r in ranks):  # every rank returns the same, complete result
        assert out["metrics"] == ref["metrics"]
        assert torch.equal(out["tr_i"], ref["tr_i"]) and torch.equal(out["ir_i"], ref["ir_i"])
        if name in ("bit_exact", "one_image"):  # one image / one pair per forward: the same float operations
            assert torch.equal(out["tr_s"], ref["tr_s"]) and torch.equal(out["ir_s"], ref["ir_s"])
        else:  # other batch compositions: float noise only
            torch.testing.assert_close(out["tr_s"], ref["tr_s"], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out["ir_s"], ref["ir_s"], atol=1e-5, rtol=1e-5)
    num_images = W["CONFIGS"][name][0]
    assert ref["tr_i"].shape == (num_images, 5) and ref["ir_i"].shape == (num_images * 5, min(5, num_images))


def test_the_check_is_not_vacuous(results):
    """The configurations differ from each other, and the re-ranking moves candidates."""
    _, single = results
    assert not torch.equal(single["chunked"]["ir_i"], single["itc"]["ir_i"])
    assert torch.isinf(single["chunked"]["ir_s"]).any() and not torch.isinf(single["rerank_all"]["ir_s"]).any()
