"""The API gives the numbers the evaluations compute: grounding boxes (fine-tuning evaluation and zero-shot
evaluation) and retrieval R@1 from ``score``."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torchvision.ops import box_convert

import xvlm_lit
from xvlm_lit.data.tasks.retrieval import build_gallery
from xvlm_lit.evaluation.retrieval import evaluate_retrieval
from xvlm_lit.tasks.grounding import GroundingModule, to_original_pixels


def _datamodule(run: dict):
    cfg = OmegaConf.create({"model": OmegaConf.to_container(run["node"], resolve=True), "data": run["data"]})
    return instantiate(cfg.data)


def _grounding_module(model, **kwargs) -> GroundingModule:
    from xvlm_lit.losses.bbox import BBoxLoss

    return GroundingModule(model, {"bbox": BBoxLoss()}, partial(torch.optim.AdamW, lr=1e-5), **kwargs)


def test_ground_reproduces_the_grounding_evaluation(tiny_run):
    """Each held-out (image, expression): the evaluation's box in original pixels == ``load(ckpt).ground``."""
    dm = _datamodule(tiny_run)
    module = _grounding_module(tiny_run["model"]).eval()
    split = dm.split("val")
    p = xvlm_lit.load(tiny_run["ckpt"], device="cpu")
    evaluated, api, sizes = [], [], []
    for batch in dm.eval_dataloader("val"):  # eval_batch_size 3: texts padded to each batch's longest
        evaluated.append(to_original_pixels(module.predict_batch(batch), batch["size"]))  # GroundingModule._eval_step
        for record, text in zip(batch["record"].tolist(), batch["texts"], strict=True):
            box = p.ground(split.image_path(split.records[record]), text)
            api.append(torch.tensor(box.xyxy))
            sizes.append(box.image_size)
    evaluated, api = torch.cat(evaluated), torch.stack(api)
    assert len(api) == 8 and len(set(sizes)) == 4  # four non-square images, two expressions each
    torch.testing.assert_close(api, evaluated, rtol=1e-5, atol=1e-5)
    assert (api[:, None] - api[None]).abs().amax(-1).triu(1).max() > 0.1  # the boxes differ between samples


def test_ground_batched_equals_single(tiny_run, tiny_data):
    p = xvlm_lit.load(tiny_run["ckpt"], device="cpu")
    images = sorted(tiny_data["images"].glob("*.png"))
    texts = ["the red rectangle", "a blue box", "green", "yellow shape on the right"]
    batched = p.ground(images, texts)
    single = [p.ground(i, t) for i, t in zip(images, texts, strict=True)]
    torch.testing.assert_close(torch.tensor([b.xyxy for b in batched]), torch.tensor([b.xyxy for b in single]),
                               rtol=1e-5, atol=1e-5)


def test_ground_matches_the_validation_predictions_file(tiny_run, tmp_path):
    """The Lightning validation of the grounding task writes ``predictions_val.jsonl`` (2 decimals)."""
    import lightning as L

    dm = _datamodule(tiny_run)
    module = _grounding_module(tiny_run["model"], output_dir=str(tmp_path))
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, datamodule=dm, verbose=False)
    rows = [json.loads(line) for line in (tmp_path / "predictions_val.jsonl").read_text().splitlines()]
    p = xvlm_lit.load(tiny_run["ckpt"], device="cpu")
    split = dm.split("val")
    for row in rows:
        box = p.ground(split.image_path(split.records[row["record"]]), row["text"])
        torch.testing.assert_close(torch.tensor(box.xyxy), torch.tensor(row["pred_xyxy"]), rtol=0, atol=0.006)
    assert len(rows) == 8


def test_ground_reproduces_the_zero_shot_evaluation(tiny_run, tmp_path):
    """Pre-training's zero-shot evaluation reads shards and predicts normalised boxes of the resized image: the
    API's ``cxcywh_norm`` on the same decoded image is the same number (and ``xyxy`` its original pixels)."""
    from data_prep.shapes import ensure_shapes_world
    from xvlm_lit.data.eval_data import load_grounding_eval
    from xvlm_lit.data.readers import ordered_reader
    from xvlm_lit.data.skips import SkipCounter
    from xvlm_lit.data.sources import make_source
    from xvlm_lit.evaluation.grounding import predict_boxes

    world = ensure_shapes_world(tmp_path / "shapes", n_train=2, n_val=3, seed=0, size=96, shard_size=3, workers=1)
    urls = str(world / "val")
    ev = load_grounding_eval(urls, image_size=64, max_tokens=30)
    pred = predict_boxes(tiny_run["model"], ev.images, ev.image_index, ev.text_ids, ev.text_mask)
    spec = make_source({"name": "eval", "urls": urls, "kind": "shards", "streams": ["itc"]})
    images = [raw for _, raw in ordered_reader([spec], SkipCounter("t"))]
    from xvlm_lit.data.decode import decode_image

    pils = [decode_image(raw, "t", SkipCounter("t")) for raw in images]
    p = xvlm_lit.load(tiny_run["ckpt"], device="cpu")
    boxes = p.ground([pils[i] for i in ev.image_index.tolist()], ev.texts)
    api = torch.tensor([b.cxcywh_norm for b in boxes])
    torch.testing.assert_close(api, pred, rtol=1e-5, atol=1e-5)
    size = torch.tensor([pils[0].size * 2], dtype=torch.float32)
    torch.testing.assert_close(torch.tensor(boxes[0].xyxy), box_convert(pred[:1] * size, "cxcywh", "xyxy")[0])


@pytest.mark.parametrize("score_rule", ["itc", "itm"])
def test_score_gives_the_retrieval_evaluation_ranking(tiny_run, tiny_data, score_rule):
    """TR@1 from ``score`` (argmax over texts per image, the image's own captions counted) equals the evaluation's
    TR@1 on the same gallery; the score matrices agree entry by entry."""
    dm = instantiate(OmegaConf.create({"model": OmegaConf.to_container(tiny_run["node"], resolve=True),
                                       "data": {**tiny_run["data"], "task": "retrieval",
                                                "root": str(tiny_data["retrieval"])}}).data)
    split = dm.split("val")
    gallery, ids, mask = dm.gallery("val")
    images = torch.stack([dm.eval_dataset("val")[i]["image"] for i in range(len(split.records))])
    result = evaluate_retrieval(tiny_run["model"], images, ids, mask, gallery.text_to_image, k=len(gallery.texts),
                                score=score_rule, keep_scores=True, distributed=False)
    p = xvlm_lit.load(tiny_run["ckpt"], device="cpu")
    scores = p.score([split.image_path(r) for r in split.records], gallery.texts)
    api = scores.itc if score_rule == "itc" else scores.itm_logit
    torch.testing.assert_close(api, result.tr_scores, rtol=1e-5, atol=1e-5)
    own = build_gallery(split).text_to_image
    tr1 = 100.0 * (own[api.argmax(1)] == torch.arange(len(api))).float().mean()
    key = "itc_tr_r1" if score_rule == "itc" else "tr_r1"
    assert tr1.item() == pytest.approx(result.metrics[key])
    assert api.shape == (4, 8)
    assert 0 < tr1 < 100  # this seed's random model gets one of the four images right: the comparison has teeth
