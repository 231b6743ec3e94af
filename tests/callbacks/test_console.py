"""Console hygiene: Lightning's tips and a dependency's deprecation warning filtered, reports logged once."""

import logging
import warnings

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities._pytree import _tree_flatten

from xvlm_lit.utils.console import ConsoleFormatter, DropAdverts, NotPrinted, quiet_dependencies, say


@pytest.fixture(autouse=True)
def no_filters():
    """Each test starts and ends without the logger filters that quiet_dependencies installs."""
    def clear():
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            logger = logging.getLogger(name)
            logger.filters = [f for f in logger.filters if not isinstance(f, DropAdverts)]
    clear()
    yield
    clear()


def leafspec_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _tree_flatten({"a": 1})
        return [str(w.message) for w in caught if "LeafSpec" in str(w.message)]


def test_pytree_warning_filtered_narrowly():
    assert leafspec_warnings()  # Lightning 2.6 on torch 2.9 emits it: the filter below has something to remove
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_dependencies()
        _tree_flatten({"a": 1})
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)  # not Lightning's
    assert [str(w.message) for w in caught] == ["`isinstance(treespec, LeafSpec)` is deprecated"]


def trainer(tmp_path) -> None:
    L.Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)


def test_litlogger_tip_dropped(caplog, tmp_path, monkeypatch):
    # start unfiltered: any earlier import of xvlm_lit.train in this process installed the filter already
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "filters", [f for f in logger.filters if not isinstance(f, DropAdverts)])
    caplog.set_level(logging.INFO)
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero"):  # other tests may raise them
        caplog.set_level(logging.INFO, logger=name)
    trainer(tmp_path)
    assert any("litlogger" in r.getMessage() for r in caplog.records)  # the tip exists ...
    caplog.clear()
    quiet_dependencies()
    trainer(tmp_path)
    assert not any("litlogger" in r.getMessage() for r in caplog.records)  # ... and is gone
    assert any("GPU available" in r.getMessage() for r in caplog.records)  # the other records stay


def test_say_prints_once_and_logs_for_the_file(capsys, caplog):
    caplog.set_level(logging.INFO, logger="xvlm_lit.report")
    say("TR@1 50.00")
    assert capsys.readouterr().out == "TR@1 50.00\n"
    (record,) = caplog.records
    assert record.getMessage() == "TR@1 50.00"
    assert NotPrinted().filter(record) is False  # the console handler skips it
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "step 5", None, None)
    assert NotPrinted().filter(other) is True


def test_console_formatter_marks_warnings_only():
    fmt = ConsoleFormatter("%(message)s")
    info = logging.LogRecord("x", logging.INFO, __file__, 1, "step 5", None, None)
    warn = logging.LogRecord("x", logging.WARNING, __file__, 1, "skipped 2 samples", None, None)
    assert fmt.format(info) == "step 5" and fmt.format(warn) == "WARNING: skipped 2 samples"


def test_model_summary_precision_notice_filtered():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_dependencies()
        warnings.warn("Precision bf16-mixed is not supported by the model summary.  Estimated model size in MB will "
                      "not be accurate. Using 32 bits instead.", UserWarning, stacklevel=1)
        warnings.warn("Precision of something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["Precision of something else"]
