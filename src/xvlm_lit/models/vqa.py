"""X-VLM for VQA: the question through all BERT layers attending the image, then an answer decoder on top."""

from __future__ import annotations

import torch
from torch import nn

from xvlm_lit.models.answer_decoder import NEW_DECODER_PARAMETER, AnswerDecoder
from xvlm_lit.models.fusion import FusionEncoder
from xvlm_lit.models.text import TextEncoder
from xvlm_lit.models.vision import VisionEncoder


class XVLMForVQA(nn.Module):
    """The reference's ``model_vqa.XVLM``: vision encoder, text + fusion layers (the question encoder), and a
    causal :class:`~xvlm_lit.models.answer_decoder.AnswerDecoder` cross-attending the question's fused states.

    Parameter names below ``vision_encoder``, ``text_encoder`` and ``fusion_encoder`` are those of
    :class:`~xvlm_lit.models.xvlm.XVLM`, so a pre-trained checkpoint maps onto them unchanged; the decoder lives
    under ``answer_decoder``. There are no contrastive, matching, box or MLM heads (the reference builds none).

    Args:
        vision, text, fusion: as :class:`~xvlm_lit.models.xvlm.XVLM`.
        decoder_layers: answer decoder depth; None = as many as the fusion layers (the reference requires that,
            since decoder layer ``i`` is initialised from fusion layer ``i``).
        embed_dim, temp: accepted and ignored, so a ``conf/model`` node of XVLM serves with only ``_target_``
            changed (VQA has no contrastive head).

    Building reads no file: see :mod:`xvlm_lit.checkpoints.vqa_keymap` for the initialisation.
    """

    def __init__(self, vision: VisionEncoder, text: TextEncoder, fusion: FusionEncoder,
                 decoder_layers: int | None = None, embed_dim: int | None = None, temp: float | None = None) -> None:
        super().__init__()
        if fusion.vision_width != vision.width:
            raise ValueError(f"model.fusion.vision_width={fusion.vision_width} but the vision encoder "
                             f"{vision.model_name} outputs {vision.width}-d tokens: set them equal")
        self.vision_encoder, self.text_encoder, self.fusion_encoder = vision, text, fusion
        self.answer_decoder = AnswerDecoder(text.spec, decoder_layers or len(fusion.layer))
        #: the reference re-initialises the decoder's cross-attention keys/values (and trains them at the higher
        #: lr) only when the pre-trained ones read tokens of another width than the question states
        self.new_cross_kv = fusion.vision_width != text.spec.hidden_size

    @property
    def image_size(self) -> int:
        return self.vision_encoder.image_size

    @property
    def grid_size(self) -> int:
        return self.vision_encoder.grid_size

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, R, R]`` -> ``[B, 1+N, Dv]``."""
        return self.vision_encoder(images)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[T, L]`` ids and mask -> ``[T, L, H]`` (text layers only)."""
        return self.text_encoder(input_ids, attention_mask)

    def fuse(self, text_hidden: torch.Tensor, text_mask: torch.Tensor, image: torch.Tensor,
             image_mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """Fusion layers: ``[T, L, H]`` text attending ``[T, Nv, Dv]`` image tokens -> ``[T, L, H]``."""
        return self.fusion_encoder(text_hidden, text_mask, image, image_mask, causal)

    def encode_question(self, images: torch.Tensor, question_ids: torch.Tensor,
                        question_mask: torch.Tensor) -> torch.Tensor:
        """The question states the decoder attends: ``[B, Lq, H]`` from images ``[B, 3, R, R]`` and questions
        ``[B, Lq]`` (``[CLS] question``) through the text layers and the fusion layers (whole image)."""
        return self.fuse(self.encode_text(question_ids, question_mask), question_mask, self.encode_image(images))

    def is_new_parameter(self, name: str) -> bool:
        """True for the decoder's cross-attention keys/values when they are new (:attr:`new_cross_kv`), the only
        weights no pre-trained tensor feeds: the reference's ``init_params`` of VQA, trained at ``lr_mult`` x lr;
        everything else (the question encoder's cross-attention included) trains at the base lr."""
        return (self.new_cross_kv and name.startswith("answer_decoder.")
                and NEW_DECODER_PARAMETER.fullmatch(name) is not None)
