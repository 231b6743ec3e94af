"""The captioning LM loss: the prompt (and [CLS], padding) is never learned; label smoothing 0.1 is the reference's
(1 - e on the true token, e / V on each other one), checked against a hand computation."""

import math

import torch
import torch.nn.functional as F

from xvlm_lit.data.tasks.caption import CaptionBatch, CaptionCollate
from xvlm_lit.data.tokenizer import load_tokenizer
from xvlm_lit.losses.base import StepCache
from xvlm_lit.losses.caption import CaptionLoss, append_sep, smoothed_lm_loss
from xvlm_lit.models.caption import lm_logits
from xvlm_lit.testing import micro_xvlm, random_batch


def test_smoothed_loss_equals_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, generator=g)
    labels = torch.tensor([[-100, -100, 3, 1], [-100, 4, -100, -100]])
    # targets: row 0 positions 1->3 (label 3), 2->3 (label 1); row 1 position 0->1 (label 4)
    terms = []
    for b, i, t in [(0, 1, 3), (0, 2, 1), (1, 0, 4)]:
        p = [math.exp(v) for v in logits[b, i].tolist()]
        logp = [math.log(x / sum(p)) for x in p]
        terms.append(-(0.9 * logp[t] + 0.1 / 5 * sum(logp[c] for c in range(5) if c != t)))
    expected = sum(terms) / len(terms)
    assert abs(float(smoothed_lm_loss(logits, labels, 0.1)) - expected) < 1e-5
    plain = F.cross_entropy(logits[:, :-1].reshape(-1, 5), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(smoothed_lm_loss(logits, labels, 0.0), plain)


def test_collate_masks_cls_prompt_and_padding():
    tok = load_tokenizer()
    collate = CaptionCollate(tok, max_tokens=12, prompt="a picture of ", train=True)
    assert collate.prompt_tokens == 4  # [CLS] a picture of: the reference's len(tokenizer(prompt).input_ids) - 1
    batch = collate([{"image": torch.zeros(3, 8, 8), "text": "a red circle"},
                     {"image": torch.zeros(3, 8, 8), "text": "two shapes"}])
    words = tok.convert_ids_to_tokens(batch.text_ids[0].tolist())
    assert words == ["[CLS]", "a", "picture", "of", "a", "red", "circle", "[SEP]"]
    assert batch.lm_labels[0].tolist() == [-100] * 4 + batch.text_ids[0, 4:].tolist()
    assert batch.lm_labels[1].tolist() == [-100] * 4 + batch.text_ids[1, 4:7].tolist() + [-100]  # padding


def test_loss_ignores_the_prompt_predictions():
    model = micro_xvlm().eval()
    ids = torch.tensor([[1, 20, 21, 22, 30, 31, 2]])  # [CLS] a picture of X Y [SEP]
    labels = ids.clone()
    labels[:, :4] = -100
    batch = CaptionBatch(images=torch.randn(1, 3, 32, 32), text_ids=ids, text_mask=torch.ones_like(ids),
                         lm_labels=labels)
    loss = CaptionLoss(label_smoothing=0.1)(model, batch, StepCache(model, batch))["caption_loss"]
    with torch.no_grad():
        logits = lm_logits(model, model.encode_image(batch.images), ids, batch.text_mask)
    assert torch.allclose(loss, smoothed_lm_loss(logits, labels, 0.1))
    edited = logits.clone()
    edited[:, :3] += torch.randn_like(edited[:, :3]) * 5  # positions predicting "a picture of": not learned
    assert torch.allclose(smoothed_lm_loss(edited, labels, 0.1), smoothed_lm_loss(logits, labels, 0.1))
    edited[:, 3] += torch.randn_like(edited[:, 3]) * 5  # position predicting X: learned
    assert not torch.allclose(smoothed_lm_loss(edited, labels, 0.1), smoothed_lm_loss(logits, labels, 0.1))


def test_pretraining_batches_get_sep_and_learn_every_caption_token():
    ids = torch.tensor([[101, 7, 8, 0], [101, 7, 8, 9]])
    mask = (ids != 0).long()
    out, new_mask = append_sep(ids, mask, 102, max_tokens=5)
    assert out.tolist() == [[101, 7, 8, 102, 0], [101, 7, 8, 9, 102]]
    out, _ = append_sep(ids, mask, 102, max_tokens=4)  # a full row loses its last wordpiece
    assert out.tolist() == [[101, 7, 8, 102], [101, 7, 8, 102]]
    model = micro_xvlm()
    batch = random_batch(model, 3, regions=False)
    out = CaptionLoss(label_smoothing=0.0)(model, batch, StepCache(model, batch))
    out["caption_loss"].backward()
    head = model.mlm_head.cls.predictions.transform.dense.weight
    assert torch.isfinite(out["caption_loss"]) and head.grad.abs().sum() > 0
    region = random_batch(model, 2, 2)
    assert CaptionLoss()(model, region, StepCache(model, region)) == {}
