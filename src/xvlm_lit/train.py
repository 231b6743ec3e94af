"""``python -m xvlm_lit.train [experiment=...] [overrides]``: compose, instantiate, fit, evaluate."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from xvlm_lit.build import build_model
from xvlm_lit.callbacks.preemption import PREEMPTED_EXIT_CODE
from xvlm_lit.callbacks.progress import progress_bar_callbacks
from xvlm_lit.config import CONF_DIR, ConfigError, check_config
from xvlm_lit.config_errors import exit_on_composition_error
from xvlm_lit.data.sources import ReaderCountError
from xvlm_lit.tasks.evaluate import evaluate_task
from xvlm_lit.tasks.finetune import FineTuneModule
from xvlm_lit.utils.console import quiet_dependencies, route_lightning_to_root, say
from xvlm_lit.utils.host_memory import keep_freed_memory

log = logging.getLogger("xvlm_lit.train")

# Lightning warnings that do not apply here: our IterableDataset knows its length per rank and worker, and
# the throughput monitor reports samples/s without a FLOP count.
warnings.filterwarnings("ignore", message=".*IterableDataset.*has `__len__` defined.*")
warnings.filterwarnings("ignore", message=".*ThroughputMonitor.*flops_per_batch.*")
quiet_dependencies()


def build(cfg: DictConfig):
    """(module, datamodule) from a composed config."""
    model = build_model(cfg.model)
    losses = {name: instantiate(node) for name, node in cfg.loss.items()}
    module = instantiate(cfg.task, model=model, losses=losses)
    return module, instantiate(cfg.data)


def build_trainer(cfg: DictConfig) -> L.Trainer:
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    # the step-counting rich bar in a terminal; none elsewhere (callbacks.progress_log writes lines instead)
    bar = progress_bar_callbacks(bool(cfg.trainer.get("enable_progress_bar", True)))
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks + bar,
                       enable_progress_bar=bool(bar))


def run(cfg: DictConfig) -> dict:
    """Train (and evaluate when ``cfg.eval`` is set); returns the final metrics."""
    check_config(cfg)
    if cfg.get("keep_host_memory", True):
        keep_freed_memory()
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule = build(cfg)
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["global_step"] = float(trainer.global_step)
    if isinstance(module, FineTuneModule) and cfg.get("test_after_fit", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        log.info("evaluating %s on val and test", best or "the final weights")
        metrics |= evaluate_task(trainer, module, datamodule, cfg.paths.output_dir, ckpt_path=best)
    if cfg.get("eval") and trainer.is_global_zero:
        from xvlm_lit.evaluation.run import run_zero_shot

        metrics |= run_zero_shot(module.model, cfg, trainer)
    out = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:
        write_loss_curve(trainer, out)
        say(f"run directory: {out.resolve()}")
    return metrics


def write_loss_curve(trainer: L.Trainer, out: Path) -> Path | None:
    """``<run>/pictures/loss_curve.png`` from the CSV logger's ``metrics.csv`` (None without a CSV logger)."""
    from lightning.pytorch.loggers import CSVLogger

    from xvlm_lit.callbacks.pictures import loss_curve_png

    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            logger.save()
            metrics = Path(logger.log_dir) / "metrics.csv"
            if metrics.is_file() and (path := loss_curve_png(metrics, out / "pictures" / "loss_curve.png")):
                log.info("loss curve: %s", path)
                return path
    return None


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float | None:
    route_lightning_to_root()  # Hydra has configured logging: Lightning's records reach train.log too
    logging.captureWarnings(True)
    try:
        metrics = run(cfg)
    except (ConfigError, ReaderCountError) as err:
        raise SystemExit(f"config error: {err}") from None
    except SIGTERMException:  # preempted: last.ckpt was written at the step reached (callbacks.Preemption)
        raise SystemExit(PREEMPTED_EXIT_CODE) from None
    return metrics.get(OmegaConf.select(cfg, "optimized_metric") or "train/loss")


def main() -> float | None:
    """``python -m xvlm_lit.train``: overrides that do not compose exit with a message naming the key and the valid
    choices (:mod:`xvlm_lit.config_errors`), then Hydra runs :func:`hydra_main`."""
    exit_on_composition_error(str(CONF_DIR), "train")
    return hydra_main()


if __name__ == "__main__":
    main()
