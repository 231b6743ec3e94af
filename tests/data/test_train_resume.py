"""Fine-tuning training order: seeded per epoch, and a run resumed from a mid-epoch step checkpoint sees exactly
the batches the uninterrupted run would have seen (Lightning saves the loader's position in the checkpoint)."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from xvlm_lit.data.tasks.samplers import ResumableLoader, TrainSampler, task_loader, train_sampler


class Indices(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def loader(n=23, batch=4, rank=0, world=1, seed=3) -> ResumableLoader:
    ds = Indices(n)
    return task_loader(ds, TrainSampler(ds, rank, world, seed=seed), batch_size=batch)


def test_order_is_a_seeded_permutation_per_epoch():
    a, b = loader(), loader()
    first = torch.cat(list(a)).tolist()
    assert sorted(first) == list(range(23)) and first == torch.cat(list(b)).tolist()
    a.sampler.set_epoch(1)
    assert torch.cat(list(a)).tolist() != first
    assert torch.cat(list(loader(seed=4))).tolist() != first


def test_ranks_split_the_permutation_without_overlap():
    shares = [torch.cat(list(loader(n=24, rank=r, world=3))).tolist() for r in range(3)]
    assert sorted(sum(shares, [])) == list(range(24)) and {len(s) for s in shares} == {8}


def test_state_dict_round_trip_continues_the_epoch():
    full = [b.tolist() for b in loader()]
    a = loader()
    it = iter(a)
    seen = [next(it).tolist() for _ in range(2)]
    state = a.state_dict()
    assert state["epoch"] == 0 and state["batches"] == 2
    b = loader()
    b.load_state_dict(state)
    assert seen + [x.tolist() for x in b] == full
    assert [x.tolist() for x in b] == full  # only the interrupted pass is shortened


def test_other_batch_size_restarts_the_epoch(caplog):
    a = loader()
    it = iter(a)
    next(it)
    b = loader(batch=5)
    b.load_state_dict(a.state_dict())
    assert "starts again" in caplog.text
    assert sum(len(x) for x in b) == 23


def test_plain_sampler_gets_a_plain_loader():
    ds = Indices(5)
    out = task_loader(ds, torch.utils.data.SequentialSampler(ds), batch_size=2)
    assert type(out) is torch.utils.data.DataLoader


class Recorder(L.LightningModule):
    """Records the items of every training batch; one weight so the optimizer has something to step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.tolist())
        return self.w * 0 + batch.float().mean() * self.w

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Data(L.LightningDataModule):
    def train_dataloader(self):
        ds = Indices(21)
        return task_loader(ds, train_sampler(self, ds), batch_size=4)  # 6 batches per epoch


def fit(tmp_path, max_steps, ckpt=None, every=None) -> Recorder:
    L.seed_everything(7)
    module = Recorder()
    callbacks = [ModelCheckpoint(tmp_path / "ckpt", filename="s{step}", every_n_train_steps=every,
                                 save_top_k=-1)] if every else []
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, callbacks=callbacks,
                        default_root_dir=tmp_path,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False)
    trainer.fit(module, datamodule=Data(), ckpt_path=ckpt)
    return module


@pytest.mark.parametrize("stop", [4, 6, 8])  # mid-epoch, at the epoch's end, mid second epoch
def test_lightning_resume_sees_the_uninterrupted_batches(tmp_path, stop):
    full = fit(tmp_path / "full", max_steps=11).seen
    first = fit(tmp_path / "a", max_steps=stop, every=stop)
    ckpt = tmp_path / "a" / "ckpt" / f"sstep={stop}.ckpt"
    assert ckpt.exists(), list((tmp_path / "a" / "ckpt").iterdir())
    resumed = fit(tmp_path / "b", max_steps=11, ckpt=str(ckpt))
    assert first.seen == full[:stop]
    assert resumed.seen == full[stop:]
