"""The model summary at the start of fit, without Lightning's FLOPs column (it reads 0: no example input is set,
so nothing is counted), written through :mod:`logging` so that ``train.log`` holds it too."""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary import get_formatted_model_size, get_human_readable_count

log = logging.getLogger("xvlm_lit.summary")

DROPPED = ("FLOPs",)


class ParamSummary(ModelSummary):
    """Name, type, parameters and mode of the top-level modules, then the parameter totals and size."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0,
                  **summarize_kwargs: Any) -> None:
        log.info(format_summary(summary_data, total_parameters, trainable_parameters, model_size))


def format_summary(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                   model_size: float) -> str:
    """A plain-text table of ``summary_data`` (column name, values) less the :data:`DROPPED` columns."""
    columns = [(name, values) for name, values in summary_data if name not in DROPPED]
    widths = [max(len(name), *(len(v) for v in values)) if values else len(name) for name, values in columns]
    rows = [[name for name, _ in columns], *zip(*(values for _, values in columns), strict=True)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += [f"trainable params: {get_human_readable_count(int(trainable_parameters))}, "
              f"total: {get_human_readable_count(int(total_parameters))}, "
              f"size: {get_formatted_model_size(model_size)} MB (float32)"]
    return "model summary\n" + "\n".join(lines)
