"""The loss-plugin contract and the per-stream cache plugins share."""

from __future__ import annotations

import torch
from torch import nn

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.models.concepts import gather_images, region_tokens
from xvlm_lit.models.xvlm import XVLM


class StepCache:
    """Encodings computed at most once per stream and step, on first use.

    ``image_tokens``/``image_mask`` are the per-text region (or image) sequences ``[T, 1+N, Dv]``/``[T, 1+N]``;
    ``full_image_tokens`` the per-text whole-image sequences; ``text_hidden`` ``[T, L, H]`` the unmasked text
    through the text layers; ``image_feat``/``text_feat`` the normalised contrastive features ``[T, E]``.
    """

    def __init__(self, model: XVLM, batch: VLBatch) -> None:
        self.model, self.batch = model, batch
        self._store: dict[str, object] = {}

    def _get(self, key: str, fn):
        if key not in self._store:
            self._store[key] = fn()
        return self._store[key]

    @property
    def images_encoded(self) -> torch.Tensor:
        """``[B, 1+N, Dv]``: every image through the vision encoder once."""
        return self._get("images", lambda: self.model.encode_image(self.batch.images))

    @property
    def image_tokens(self) -> torch.Tensor:
        return self._regions()[0]

    @property
    def image_mask(self) -> torch.Tensor:
        return self._regions()[1]

    def _regions(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.batch
        return self._get("regions", lambda: region_tokens(self.images_encoded, b.image_index, b.patch_mask))

    @property
    def full_image_tokens(self) -> torch.Tensor:
        return self._get("full", lambda: gather_images(self.images_encoded, self.batch.image_index))

    @property
    def text_hidden(self) -> torch.Tensor:
        b = self.batch
        return self._get("text", lambda: self.model.encode_text(b.text_ids, b.text_mask))

    @property
    def image_feat(self) -> torch.Tensor:
        return self._get("image_feat", lambda: self.model.image_feat(self.image_tokens))

    @property
    def text_feat(self) -> torch.Tensor:
        return self._get("text_feat", lambda: self.model.text_feat(self.text_hidden))


class LossPlugin(nn.Module):
    """A loss term: ``plugin(model, batch, cache) -> {"<name>_loss": scalar, other metrics...}``.

    The task multiplies every ``*_loss`` entry by ``weight`` and sums; other entries are only logged.
    A plugin that does not apply to a batch (e.g. boxes on an image-text batch) returns ``{}``.
    """

    name: str = "loss"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(self, model: XVLM, batch: VLBatch, cache: StepCache) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def zero_touching(module: nn.Module) -> torch.Tensor:
    """A zero scalar connected to every parameter of ``module`` (keeps DDP's gradient buckets complete)."""
    params = list(module.parameters())
    return torch.stack([p.sum() for p in params]).sum() * 0.0
