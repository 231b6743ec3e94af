"""Zero-shot evaluation after pre-training: retrieval and grounding on a held-out split, with baselines."""

from __future__ import annotations

import json
from pathlib import Path

from torchvision.ops import box_convert

from xvlm_lit.evaluation.grounding import accuracy_at_iou, best_constant_box, mean_iou, predict_boxes
from xvlm_lit.evaluation.retrieval import chance_recall, retrieval_metrics, retrieval_scores
from xvlm_lit.models.xvlm import XVLM


def evaluate_zero_shot(model: XVLM, retrieval: dict, grounding: dict, rerank_k: int = 16) -> dict[str, float]:
    """Metrics (percent) of ``model`` on eval data from :mod:`xvlm_lit.data.eval_data`.

    Args:
        retrieval: ``images [Ni,3,R,R]``, ``text_ids``/``text_mask [Nt,L]``, ``text_to_image [Nt]``.
        grounding: ``images``, ``image_index [T]``, ``text_ids``/``text_mask [T,L]``, ``target_cxcywh [T,4]``.
    """
    model.eval()
    itc, reranked = retrieval_scores(model, retrieval["images"], retrieval["text_ids"], retrieval["text_mask"],
                                     k=rerank_k)
    t2i = retrieval["text_to_image"]
    out = {f"itc_{k}": v for k, v in retrieval_metrics(itc, t2i).items()}
    out |= retrieval_metrics(reranked, t2i)
    chance = chance_recall(itc.shape[0], itc.shape[1])
    out |= {f"chance_{k}": v for k, v in chance.items()}
    pred = predict_boxes(model, grounding["images"], grounding["image_index"], grounding["text_ids"],
                         grounding["text_mask"])
    target = grounding["target_cxcywh"].float()
    to_xyxy = lambda b: box_convert(b, "cxcywh", "xyxy")  # noqa: E731
    out["grounding_acc50"] = accuracy_at_iou(to_xyxy(pred), to_xyxy(target))
    out["grounding_mean_iou"] = mean_iou(to_xyxy(pred), to_xyxy(target))
    _, out["constant_box_acc50"] = best_constant_box(target)
    out["num_images"], out["num_texts"], out["num_region_texts"] = itc.shape[0], itc.shape[1], len(target)
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


