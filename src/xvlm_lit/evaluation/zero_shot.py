"""Zero-shot evaluation after pre-training: retrieval and grounding on a held-out split, with baselines."""

from __future__ import annotations

import json
from pathlib import Path

from torchvision.ops import box_convert

from xvlm_lit.evaluation.grounding import best_constant_box, predict_boxes
from xvlm_lit.evaluation.metrics import GroundingAccuracy
from xvlm_lit.evaluation.retrieval import chance_recall, evaluate_retrieval
from xvlm_lit.models.xvlm import XVLM


def evaluate_zero_shot(model: XVLM, retrieval: dict, grounding: dict, rerank_k: int = 16, score: str = "itm",
                       details: dict | None = None) -> dict[str, float]:
    """Metrics (percent) of ``model`` on eval data from :mod:`xvlm_lit.data.eval_data`, in this process alone
    (it runs on rank 0 only, so no collective is used even under an initialised process group).

    Args:
        retrieval: ``images [Ni,3,R,R]``, ``text_ids``/``text_mask [Nt,L]``, ``text_to_image [Nt]``.
        grounding: ``images``, ``image_index [T]``, ``text_ids``/``text_mask [T,L]``, ``target_cxcywh [T,4]``.
        rerank_k: candidates re-ranked by ITM per query; score: the score rule of
            :func:`~xvlm_lit.evaluation.retrieval.evaluate_retrieval`.
        details: when given, filled with ``retrieval`` (the :class:`RetrievalResult`) and ``grounding_pred``
            (normalised cxcywh ``[T, 4]``), e.g. for pictures.
    """
    model.eval()
    result = evaluate_retrieval(model, retrieval["images"], retrieval["text_ids"], retrieval["text_mask"],
                                retrieval["text_to_image"], k=rerank_k, score=score, distributed=False)
    out = dict(result.metrics)
    num_images, num_texts = len(retrieval["images"]), len(retrieval["text_ids"])
    chance = chance_recall(num_images, num_texts)
    out |= {f"chance_{k}": v for k, v in chance.items()}
    pred = predict_boxes(model, grounding["images"], grounding["image_index"], grounding["text_ids"],
                         grounding["text_mask"])
    target = grounding["target_cxcywh"].float()
    if details is not None:
        details.update(retrieval=result, grounding_pred=pred)
    boxes = GroundingAccuracy(0.5, sync_on_compute=False)
    boxes.update(box_convert(pred, "cxcywh", "xyxy"), box_convert(target, "cxcywh", "xyxy"))
    acc = boxes.compute()
    out["grounding_acc50"], out["grounding_mean_iou"] = acc["acc"], acc["mean_iou"]
    _, out["constant_box_acc50"] = best_constant_box(target)
    out["num_images"], out["num_texts"], out["num_region_texts"] = num_images, num_texts, len(target)
    return out


def format_table(m: dict[str, float]) -> str:
    """A plain-text table of the zero-shot metrics beside chance and the best-constant-box baseline."""
    rows = [("metric", "model", "ITC only", "baseline")]
    for k in (1, 5, 10):
        for side in ("tr", "ir"):
            key = f"{side}_r{k}"
            rows.append((f"{side.upper()}@{k}", f"{m[key]:.2f}", f"{m['itc_' + key]:.2f}",
                         f"{m['chance_' + key]:.2f} (chance)"))
    rows.append(("grounding Acc@0.5", f"{m['grounding_acc50']:.2f}", "-",
                 f"{m['constant_box_acc50']:.2f} (best constant box)"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    head = f"zero-shot on {int(m['num_images'])} held-out images, {int(m['num_region_texts'])} region texts"
    return "\n".join([head, lines[0], "-" * len(lines[0]), *lines[1:]])


def write_metrics(metrics: dict[str, float], out_dir: str | Path) -> Path:
    """``metrics.json`` in ``out_dir``."""
    path = Path(out_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return path


