"""Lists of task items -> batches (training: :class:`VLBatch` for the loss plugins; evaluation: dicts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from xvlm_lit.data.batch import VLBatch
from xvlm_lit.data.tokenizer import encode_captions, pad_ids


class TaskCollate:
    """Tokenizes ``[CLS] wordpieces`` (no [SEP]) padded to the batch's longest text; drops None items.

    ``kind``: ``"retrieval"`` (idx = image position: same-image captions are positives), ``"grounding"``
    (target boxes; whole images), ``"grounding_eval"`` / ``"gallery"`` (dicts for evaluation).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_tokens: int, kind: str) -> None:
        self.tokenizer, self.max_tokens, self.kind = tokenizer, max_tokens, kind

    def tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = encode_captions(self.tokenizer, texts, self.max_tokens)
        return pad_ids(ids, max((len(i) for i in ids), default=1), pad_id=self.tokenizer.pad_token_id or 0)

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> VLBatch | dict[str, Any] | None:
        items = [it for it in items if it is not None]
        if not items:
            return None
        stack = lambda key: torch.stack([it[key] for it in items])  # noqa: E731
        if self.kind == "gallery":
            return {"images": stack("image"), "index": torch.tensor([it["index"] for it in items]),
                    "ok": torch.tensor([it["ok"] for it in items])}
        ids, mask = self.tokens([it["text"] for it in items])
        if self.kind == "retrieval":
            return VLBatch(images=stack("image"), text_ids=ids, text_mask=mask,
                           idx=torch.tensor([it["idx"] for it in items]))
        if self.kind == "grounding":
            return VLBatch(images=stack("image"), text_ids=ids, text_mask=mask, target_box=stack("target"),
                           has_box=torch.ones(len(items), dtype=torch.bool))
        return {"images": stack("image"), "text_ids": ids, "text_mask": mask, "target": stack("target"),
                "box": stack("box"), "size": stack("size"), "record": torch.tensor([it["record"] for it in items]),
                "texts": [it["text"] for it in items]}
