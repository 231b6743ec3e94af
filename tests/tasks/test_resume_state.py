"""Resume restores weights and optimizer/scheduler state, not only the step: 2 + 2 steps equal 4 steps."""

import lightning as L
import torch

from tests.tasks.nonfinite_plugins import build, loader, trainer


def test_resumed_run_ends_with_the_uninterrupted_weights_and_optimizer_state(tmp_path):
    # ITC + MLM with dropout off and one repeated batch: the run is deterministic whatever the data position
    straight = build(set())
    trainer(4, [], devices=1).fit(straight, loader(4, same=True))

    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    first = build(set())
    trainer(2, [ckpt], devices=1, enable_checkpointing=True).fit(first, loader(4, same=True))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 2

    resumed = build(set())
    t2 = trainer(4, [], devices=1)
    t2.fit(resumed, loader(4, same=True), ckpt_path=str(tmp_path / "last.ckpt"))
    assert t2.global_step == 4

    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), name
    assert not torch.allclose(straight.model.text_proj.weight, first.model.text_proj.weight)  # steps 3-4 moved it
    opt_a, opt_b = straight.trainer.optimizers[0].state_dict(), t2.optimizers[0].state_dict()
    assert opt_a["state"].keys() == opt_b["state"].keys() and len(opt_a["state"]) > 0
    for key, sa in opt_a["state"].items():
        sb = opt_b["state"][key]
        assert float(sa["step"]) == float(sb["step"]) == 4.0
        assert torch.allclose(sa["exp_avg"], sb["exp_avg"], rtol=0, atol=1e-7)
        assert torch.allclose(sa["exp_avg_sq"], sb["exp_avg_sq"], rtol=0, atol=1e-9)
    assert [g["lr"] for g in opt_a["param_groups"]] == [g["lr"] for g in opt_b["param_groups"]]
    sched_a, sched_b = straight.lr_schedulers(), resumed.lr_schedulers()
    assert sched_a.last_epoch == sched_b.last_epoch == 4
