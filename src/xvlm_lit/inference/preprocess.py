"""The checkpoint's evaluation preprocessing: the project's eval image transform and caption cleaning/tokenizing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from xvlm_lit.data.text import clean_caption
from xvlm_lit.data.tokenizer import encode_captions, load_tokenizer, pad_ids
from xvlm_lit.data.transforms import ImageTextTransform
from xvlm_lit.inference.errors import InferenceError


@dataclass
class Preprocessor:
    """Images -> ``[B, 3, R, R]`` with :class:`~xvlm_lit.data.transforms.ImageTextTransform` in evaluation mode
    (bicubic resize to ``R x R``, CLIP normalisation: what every evaluation of the project applies); texts ->
    cleaned (:func:`~xvlm_lit.data.text.clean_caption`, ``max_words``) ``[CLS] wordpieces`` ids and mask ``[T, L]``
    (at most ``max_tokens``, padded to the longest), as the evaluation collates them.

    Attributes:
        image_size: ``R``; max_tokens, max_words: the checkpoint's ``data.max_tokens`` / ``data.max_words``;
        tokenizer_path: ``data.tokenizer_path`` (None: the default BERT-base-uncased vocabulary).
    """

    image_size: int
    max_tokens: int = 40
    max_words: int = 30
    tokenizer_path: str | None = None
    _tokenizer: PreTrainedTokenizerBase | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.transform = ImageTextTransform(self.image_size, train=False)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path)
        return self._tokenizer

    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> ``[B, 3, R, R]`` float (CLIP-normalised)."""
        if not images:
            return torch.zeros(0, 3, self.image_size, self.image_size)
        return torch.stack([self.transform(img, [])[0] for img in images])

    def clean(self, texts: Sequence[str], max_words: int | None = None) -> list[str]:
        """Texts cleaned as the evaluation data cleans captions; an empty result is an error naming the text."""
        out = []
        for text in texts:
            if not isinstance(text, str):
                raise InferenceError(f"a text must be a string, got {type(text).__name__}: {text!r}")
            cleaned = clean_caption(text, max_words or self.max_words)
            if not cleaned:
                raise InferenceError(f"text {text!r} is empty after cleaning (punctuation only?)")
            out.append(cleaned)
        return out

    def texts(self, texts: Sequence[str], max_tokens: int | None = None, max_words: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (ids ``[T, L]``, mask ``[T, L]``), ``L`` the longest (at most ``max_tokens``)."""
        ids = encode_captions(self.tokenizer, self.clean(texts, max_words), max_tokens or self.max_tokens)
        return pad_ids(ids, max((len(i) for i in ids), default=1), pad_id=self.tokenizer.pad_token_id or 0)
