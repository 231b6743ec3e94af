"""The VQA answer loss (the reference's ``model_vqa.XVLM.forward(train=True)``) as a loss plugin."""

from __future__ import annotations

import torch

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.losses.base import LossPlugin, StepCache


class VQALoss(LossPlugin):
    """Plugin: ``vqa_loss`` = sum over answers of ``weight * (sum over the answer's tokens of -log p)``, divided by
    the number of questions (images) in the batch; also ``vqa_answer_nll`` (the unweighted mean per answer).

    The question runs through the text and fusion layers attending the whole image (once per question); its
    fused states ``[B, Lq, H]`` are repeated for each of its answers (``answer_question``), and the answer decoder
    scores ``answer [SEP]`` after ``[CLS]``. Batches without answers (not a VQA batch) contribute nothing.
    """

    name = "vqa"

    def forward(self, model, batch: VLBatch, cache: StepCache) -> dict[str, torch.Tensor]:
        answer_ids = getattr(batch, "answer_ids", None)
        if answer_ids is None:
            return {}
        states = model.fuse(cache.text_hidden, batch.text_mask, cache.images_encoded)  # [B, Lq, H]
        owner = batch.answer_question
        nll = model.answer_decoder.sequence_nll(answer_ids, batch.answer_mask, states[owner],
                                                batch.text_mask[owner])  # [A]
        loss = (batch.answer_weights.to(nll.dtype) * nll).sum() / batch.images.shape[0]
        return {"vqa_loss": loss, "vqa_answer_nll": nll.detach().mean()}
