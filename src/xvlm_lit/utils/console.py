"""Console hygiene of the entry points: Lightning's records go through the root logger (so Hydra's ``train.log``
holds them), its advertising tips and a dependency's deprecation warning are dropped, and :func:`say` prints a
report and writes it to the log file once."""

from __future__ import annotations

import logging
import warnings

log = logging.getLogger("xvlm_lit.report")

# Lightning 2.6 suggests cloud products on every fit ("Tip: ... litlogger", "... litmodels"), and says that our
# ParamSummary replaces its default summary (intended).
ADVERTS = ("litlogger", "litmodels", "Skipping setting a default `ModelSummary` callback")
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


class DropAdverts(logging.Filter):
    """Drops Lightning's product tips and its notice about our model summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(word in record.getMessage() for word in ADVERTS)


class NotPrinted(logging.Filter):
    """On a console handler: drops records already printed to the console by :func:`say`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "printed", False)


class ConsoleFormatter(logging.Formatter):
    """The message alone for INFO and below (the console reads like a report), ``WARNING: ...`` above."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno <= logging.INFO else f"{record.levelname}: {text}"


def say(text: str) -> None:
    """Print ``text`` (a report: the evaluation table, the run directory) and log it for the log file only (the
    console handler of ``conf/hydra/job_logging`` skips it, so it is not shown twice)."""
    print(text, flush=True)
    log.info(text, extra={"printed": True})


def quiet_dependencies() -> None:
    """Filter the warnings and tips that are not ours to fix, narrowly (exact message, origin module)."""
    # torch 2.9 deprecates LeafSpec; lightning/pytorch/utilities/_pytree.py still uses it (nothing to do here)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")
    # Lightning's summary cannot size a bf16-mixed model; ParamSummary states its size in float32 itself
    warnings.filterwarnings("ignore", message=r"Precision .* is not supported by the model summary")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropAdverts) for f in logger.filters):
            logger.addFilter(DropAdverts())


def route_lightning_to_root() -> None:
    """Lightning gives its loggers their own stream handler and stops propagation when it is imported before
    logging is configured; undo that so Hydra's handlers (console and ``train.log``) receive its records."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        logger.propagate = True
