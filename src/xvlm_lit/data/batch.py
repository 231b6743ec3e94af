"""The batch one stream (image-text or region) hands to the model and the loss plugins."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class VLBatch:
    """Texts paired with (regions of) images; ``T`` texts, ``B`` images, ``L`` tokens, ``M`` mask slots.

    Attributes:
        images: ``[B, 3, R, R]`` normalised images, each encoded once.
        text_ids: ``[T, L]`` token ids ``[CLS] wordpieces`` padded with 0.
        text_mask: ``[T, L]`` 1 for real tokens.
        image_index: ``[T]`` image of each text; None when text i belongs to image i (``T == B``).
        patch_mask: ``[T, 1+N]`` region patch masks (see ``boxes_to_patch_mask``); None = whole images.
        masked_ids: ``[T, L]`` MLM input ids.
        masked_pos: ``[T, M]`` masked positions (0-padded).
        masked_labels: ``[T, M]`` original ids at ``masked_pos`` (-100 padded).
        target_box: ``[T, 4]`` normalised (cx, cy, w, h) of each text's region.
        has_box: ``[T]`` bool, False for whole-image captions (no box loss).
        idx: ``[T]`` concept/image ids: equal ids are positives of each other in ITC and never ITM negatives.
        valid: ``[T]`` bool, False for padding entries excluded from every loss.
    """

    images: torch.Tensor
    text_ids: torch.Tensor
    text_mask: torch.Tensor
    image_index: torch.Tensor | None = None
    patch_mask: torch.Tensor | None = None
    masked_ids: torch.Tensor | None = None
    masked_pos: torch.Tensor | None = None
    masked_labels: torch.Tensor | None = None
    target_box: torch.Tensor | None = None
    has_box: torch.Tensor | None = None
    idx: torch.Tensor | None = None
    valid: torch.Tensor | None = None

    @property
    def num_texts(self) -> int:
        return int(self.text_ids.shape[0])

    def valid_mask(self) -> torch.Tensor:
        """``[T]`` bool, all True when ``valid`` is None."""
        if self.valid is None:
            return torch.ones(self.num_texts, dtype=torch.bool, device=self.text_ids.device)
        return self.valid.to(torch.bool)

    def select(self, keep: torch.Tensor) -> VLBatch:
        """The texts ``keep`` (``[T]`` bool or index) with all images kept (per-text fields sliced)."""
        per_text = {f.name for f in fields(self)} - {"images"}
        changes = {}
        for name in per_text:
            value = getattr(self, name)
            changes[name] = value[keep] if value is not None else None
        if self.image_index is None:
            changes["image_index"] = torch.arange(self.images.shape[0], device=self.text_ids.device)[keep]
        return replace(self, **changes)
