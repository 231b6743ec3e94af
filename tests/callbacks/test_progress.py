"""Progress a person can follow: log lines without a terminal, a step-counting rich bar in one."""

import logging
import re

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from xvlm_lit.callbacks.progress import ProgressLog, StepProgressBar, progress_bar_callbacks
from xvlm_lit.utils import progress as progress_mod
from xvlm_lit.utils.progress import format_duration, progress, progress_line

LINE = re.compile(r"step (\d+)/7 \((\d+)%\) \| loss (\d+\.\d{4}) \| (\d+\.\d) samples/s \| elapsed \d:\d\d:\d\d "
                  r"\| ETA \d:\d\d:\d\d")


class Stream(IterableDataset):
    """An endless stream without a length (as the pre-training streams): Lightning cannot count epochs."""

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        while True:
            yield torch.randn(3, generator=g)


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch).pow(2).mean()
        self.losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(Stream(), batch_size=5)


def fit(callbacks, bar: bool = False) -> Tiny:
    module = Tiny()
    trainer = L.Trainer(max_steps=7, max_epochs=-1, logger=False, enable_checkpointing=False, accelerator="cpu",
                        enable_model_summary=False, enable_progress_bar=bar, callbacks=callbacks)
    trainer.fit(module)
    return module


@pytest.fixture
def no_tty(monkeypatch):
    monkeypatch.setattr(progress_mod, "is_terminal", lambda: False)
    monkeypatch.setattr("xvlm_lit.callbacks.progress.is_terminal", lambda: False)


def test_log_lines_without_a_terminal(no_tty, caplog):
    caplog.set_level(logging.INFO, logger="xvlm_lit.progress")
    module = fit([ProgressLog(every_n_steps=3, batch_size_fn=len)])
    lines = [r.getMessage() for r in caplog.records if r.name == "xvlm_lit.progress"]
    assert lines[0] == "training from step 0 to 7, a progress line every 3 steps"
    matches = [LINE.fullmatch(line) for line in lines[1:]]
    assert all(matches), lines
    assert [int(m[1]) for m in matches] == [3, 6, 7]  # every 3 steps, and the last one
    assert [int(m[2]) for m in matches] == [43, 86, 100]
    # the loss shown is the loss of that step
    assert [float(m[3]) for m in matches] == pytest.approx([module.losses[i] for i in (2, 5, 6)], abs=1e-4)
    assert all(float(m[4]) > 0 for m in matches)


def test_no_lines_in_a_terminal_or_when_off(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="xvlm_lit.progress")
    monkeypatch.setattr("xvlm_lit.callbacks.progress.is_terminal", lambda: True)
    fit([ProgressLog(every_n_steps=3), ProgressLog(every_n_steps=0, when="always"), ProgressLog(when="never")])
    assert not [r for r in caplog.records if r.name == "xvlm_lit.progress"]


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="callbacks.progress_log.when='sometimes'"):
        ProgressLog(when="sometimes")
    with pytest.raises(ValueError, match="every_n_steps=-1"):
        ProgressLog(every_n_steps=-1)


def test_rich_bar_counts_steps_not_epochs():
    bar = StepProgressBar()
    fit([bar], bar=True)
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert task.total == 7 and task.completed == 7
    assert "Epoch" not in task.description and "-2" not in task.description


def test_bar_only_in_a_terminal(monkeypatch):
    monkeypatch.setattr("xvlm_lit.callbacks.progress.is_terminal", lambda: False)
    assert progress_bar_callbacks(True) == []
    monkeypatch.setattr("xvlm_lit.callbacks.progress.is_terminal", lambda: True)
    assert [type(c) for c in progress_bar_callbacks(True)] == [StepProgressBar]
    assert progress_bar_callbacks(False) == []


def test_progress_iterator_logs_every_n_and_at_the_end(no_tty, caplog):
    caplog.set_level(logging.INFO, logger="xvlm_lit.progress")
    assert list(progress(range(25), "convert", every=10, unit="records")) == list(range(25))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert [line.split(" records")[0] for line in lines] == ["convert: 10/25", "convert: 20/25", "convert: 25/25"]
    assert lines[-1].startswith("convert: 25/25 records (100%)") and lines[-1].endswith("ETA 0:00:00")
    caplog.clear()
    assert list(progress(range(9), "short", every=10)) == list(range(9))
    assert not caplog.records  # shorter than one interval: silent


def test_progress_line_and_durations():
    assert progress_line("eval", 50, 200, 10.0, "texts") == "eval: 50/200 texts (25%), 5.0 texts/s, ETA 0:00:30"
    assert progress_line("eval", 50, None, 10.0) == "eval: 50 items, 5.0 items/s, elapsed 0:00:10"
    assert format_duration(3723) == "1:02:03" and format_duration(float("nan")) == "?"
