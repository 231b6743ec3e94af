"""Which heads a loaded checkpoint really has (imported weights, not a random initialisation)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from xvlm_lit.checkpoints.caption_keymap import is_caption_layout
from xvlm_lit.checkpoints.importer import ImportReport
from xvlm_lit.checkpoints.sources import Source
from xvlm_lit.inference.config import CheckpointConfig
from xvlm_lit.inference.errors import MissingHeadError
from xvlm_lit.models.vqa import XVLMForVQA

#: head -> (what to call it in an error, the experiment that trains it)
HEAD_NAMES = {
    "itc": ("contrastive (ITC) projection", "retrieval_coco (or a pre-training experiment)"),
    "itm": ("image-text matching (ITM) head", "retrieval_coco (or a pre-training experiment)"),
    "box": ("box head", "grounding_refcoco_plus (or a pre-training experiment with region data)"),
    "caption": ("caption decoder", "caption_coco (caption_demo on the shapes world)"),
    "answer": ("answer decoder", "vqa (vqa_demo on the shapes world)"),
}


@dataclass(frozen=True)
class Heads:
    """True for each head whose weights came from the checkpoint."""

    itc: bool = False
    itm: bool = False
    box: bool = False
    caption: bool = False
    answer: bool = False

    def require(self, head: str, why: str = "") -> None:
        """Raise :class:`MissingHeadError` naming the head and the experiment training it, when it is absent."""
        if not getattr(self, head):
            name, experiment = HEAD_NAMES[head]
            raise MissingHeadError(name, experiment, why)


def _loaded(report: ImportReport, prefixes: tuple[str, ...]) -> bool:
    return not any(k.startswith(prefixes) for k in report.initialised)


def detect_heads(model: nn.Module, source: Source, report: ImportReport, cfg: CheckpointConfig) -> Heads:
    """The heads of ``model`` after importing ``source`` (``report``), given the run's task and losses."""
    if isinstance(model, XVLMForVQA):
        return Heads(answer=True)
    task = str(cfg.task.get("_target_", ""))
    caption = (is_caption_layout(source.state_dict) or task.endswith("CaptionModule") or "caption" in cfg.losses)
    return Heads(itc=_loaded(report, ("vision_proj.", "text_proj.")), itm=_loaded(report, ("itm_head.",)),
                 box=_loaded(report, ("bbox_head.",)), caption=caption)
