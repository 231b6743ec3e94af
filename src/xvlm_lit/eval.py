"""``python -m xvlm_lit.eval ckpt_path=<file> [experiment=...] [overrides]``: evaluate a saved checkpoint.

The model is built from the config of the run the checkpoint was saved in (``<run>/.hydra/config.yaml``) when there
is one, else from the composed config; the weights are imported strictly (every key accounted for); the
evaluation configured under ``eval`` runs and writes ``metrics.json`` to this run's directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from xvlm_lit.build import build_model
from xvlm_lit.checkpoints import init_from
from xvlm_lit.checkpoints.run_config import run_config_path
from xvlm_lit.config import CONF_DIR, ConfigError, check_schema
from xvlm_lit.config_errors import exit_on_composition_error

log = logging.getLogger("xvlm_lit.eval")


def _with_run_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``model`` and ``data`` taken from the checkpoint's run directory, when it has a saved config."""
    path = run_config_path(cfg.ckpt_path)
    if not cfg.get("config_from_run", True) or path is None:
        return cfg
    saved = OmegaConf.load(path)
    if OmegaConf.select(saved, "data._target_") != OmegaConf.select(cfg, "data._target_"):
        return cfg  # another kind of job (e.g. pre-training evaluated zero-shot on a task): the task's config rules
    with open_dict(cfg):
        for key in ("model", "data"):
            if key in saved:
                cfg[key] = saved[key]
    log.info("model and data config from %s", path)
    return cfg


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Import ``cfg.ckpt_path`` into the configured model and run the configured evaluation; returns the metrics."""
    check_schema(cfg)
    ckpt = cfg.get("ckpt_path")
    if not ckpt or not Path(ckpt).is_file():
        raise ConfigError(f"ckpt_path={ckpt}: no such checkpoint file (give ckpt_path=<run>/checkpoints/last.ckpt)")
    if not cfg.get("eval") and not is_task(cfg):
        raise ConfigError("eval is null: this experiment configures no evaluation (e.g. experiment=pretrain_demo "
                          "sets eval.split)")
    cfg = _with_run_config(cfg)
    model = build_model(cfg.model, load_weights=False)  # the weights come from the checkpoint
    init_from(model, ckpt)  # logs its report
    if is_task(cfg):
        metrics = _evaluate_task(cfg, model)
    else:
        from xvlm_lit.evaluation.run import run_zero_shot

        metrics = run_zero_shot(model, cfg)
    print(f"evaluated {Path(ckpt).resolve()}", flush=True)
    return metrics


def is_task(cfg: DictConfig) -> bool:
    """True for a fine-tuning experiment (its DataModule reads a task folder)."""
    return str(OmegaConf.select(cfg, "data._target_", default="")).endswith("TaskDataModule")


def _evaluate_task(cfg: DictConfig, model) -> dict[str, float]:
    from hydra.utils import instantiate

    from xvlm_lit.tasks.evaluate import evaluate_task
    from xvlm_lit.train import build_trainer

    losses = {name: instantiate(node) for name, node in cfg.loss.items()}
    module = instantiate(cfg.task, model=model, losses=losses)
    with open_dict(cfg):
        cfg.callbacks = None  # evaluation saves no checkpoint
    trainer = build_trainer(cfg)
    return evaluate_task(trainer, module, instantiate(cfg.data), cfg.paths.output_dir)


@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    from xvlm_lit.utils.console import quiet_dependencies, route_lightning_to_root

    quiet_dependencies()
    route_lightning_to_root()  # Lightning's records reach <run>/eval.log too
    logging.captureWarnings(True)
    try:
        evaluate(cfg)
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None


def main() -> None:
    """``python -m xvlm_lit.eval``: overrides that do not compose exit with a message naming the key and the valid
    choices (:mod:`xvlm_lit.config_errors`), then Hydra runs :func:`hydra_main`."""
    exit_on_composition_error(str(CONF_DIR), "eval")
    hydra_main()


if __name__ == "__main__":
    main()
