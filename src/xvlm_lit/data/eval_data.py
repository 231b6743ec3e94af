"""Held-out data for zero-shot evaluation: retrieval (image <-> caption) and grounding (text -> box).

Both read shards in order (deterministic), use eval transforms only (bicubic resize to ``R x R``), and skip bad
samples with the same counted reasons as training (``result.skipped``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torchvision.ops import box_convert
from transformers import PreTrainedTokenizerBase

from xvlm_lit.data.decode import check_size, decode_image, parse_record, region_elements
from xvlm_lit.data.readers import ordered_reader
from xvlm_lit.data.samples import SampleMaker
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.sources import SourceSpec, make_source
from xvlm_lit.data.tokenizer import load_tokenizer, tokenize_captions
from xvlm_lit.data.transforms import RegionAnnotation, RegionTransform, box_xywh_to_cxcywh_norm

TokenizerLike = PreTrainedTokenizerBase | str | os.PathLike | None


@dataclass
class RetrievalEval:
    """``N`` images with one caption each (the first usable one); text ``i`` describes image ``text_to_image[i]``.

    Attributes:
        images: FloatTensor ``[N, 3, R, R]`` (eval transform, CLIP-normalised).
        captions: ``N`` cleaned captions.
        text_ids, text_mask: LongTensor ``[N, L]`` (``[CLS] wordpieces``, no [SEP]).
        text_to_image: LongTensor ``[N]`` (here ``arange(N)``).
        image_ids: ``N`` image ids.
        skipped: ``{reason: n}`` of the samples/texts left out.
    """

    images: torch.Tensor
    captions: list[str]
    text_ids: torch.Tensor
    text_mask: torch.Tensor
    text_to_image: torch.Tensor
    image_ids: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The fields as a dict (the input of ``xvlm_lit.evaluation.zero_shot.evaluate_zero_shot``)."""
        return dict(self.__dict__)


@dataclass
class GroundingEval:
    """Region texts over ``N`` images; each text has its target box in the resized ``R x R`` image.

    Attributes:
        images: FloatTensor ``[N, 3, R, R]``.
        texts: ``T`` cleaned region texts.
        text_ids, text_mask: LongTensor ``[T, L]``.
        image_index: LongTensor ``[T]``, the image of each text.
        boxes_xyxy: FloatTensor ``[T, 4]`` (x0, y0, x1, y1) in pixels of the resized image.
        boxes_cxcywh: FloatTensor ``[T, 4]`` normalised (cx, cy, w, h) in [0, 1].
        image_ids: ``N`` image ids.
        skipped: ``{reason: n}``.
    """

    images: torch.Tensor
    texts: list[str]
    text_ids: torch.Tensor
    text_mask: torch.Tensor
    image_index: torch.Tensor
    boxes_xyxy: torch.Tensor
    boxes_cxcywh: torch.Tensor
    image_ids: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The fields as a dict, plus ``target_cxcywh`` (= ``boxes_cxcywh``) as ``evaluate_zero_shot`` reads it."""
        return {**self.__dict__, "target_cxcywh": self.boxes_cxcywh}


def _tokenizer(tokenizer: TokenizerLike) -> PreTrainedTokenizerBase:
    return tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else load_tokenizer(tokenizer)


def _source(urls: str | Sequence[str], kind: str) -> SourceSpec:
    return make_source({"name": "eval", "urls": urls, "kind": kind, "streams": ["itc"]})


def _stack(images: list[torch.Tensor], image_size: int) -> torch.Tensor:
    return torch.stack(images) if images else torch.zeros(0, 3, image_size, image_size)


def load_retrieval_eval(urls: str | Sequence[str], image_size: int, tokenizer: TokenizerLike = None,
                        max_tokens: int = 40, limit: int | None = None, max_words: int = 30,
                        kind: str = "shards") -> RetrievalEval:
    """Read up to ``limit`` images (in shard order) with their first usable caption (see :class:`RetrievalEval`)."""
    spec, counter = _source(urls, kind), SkipCounter("retrieval eval")
    maker = SampleMaker(image_size, max_words, train=False, counter=counter)
    items = []
    for _, raw in ordered_reader([spec], counter):
        if limit is not None and len(items) >= limit:
            break
        item = maker.itc(raw, spec)
        if item is not None:
            items.append(item)
    captions = [it.text for it in items]
    ids, mask = tokenize_captions(_tokenizer(tokenizer), captions, max_tokens)
    return RetrievalEval(_stack([it.image for it in items], image_size), captions, ids, mask,
                         torch.arange(len(items)), [it.image_id for it in items], dict(counter.totals))


def _grounding_sample(raw: dict, spec: SourceSpec, transform: RegionTransform, max_words: int,
                      include_objects: bool, counter: SkipCounter):
    """(image [3,R,R], image_id, [(text, box xywh in R pixels)]) or None (counted)."""
    where = f"{spec.name}/{raw.get('__key__', '?')}"
    record = parse_record(raw, spec, counter)
    img = decode_image(raw, where, counter) if record is not None else None
    if img is None or not check_size(record, img, where, counter):
        return None
    elements = region_elements(record, img.size, max_words, where, counter, rng=None, all_captions=True,
                               objects=include_objects)
    if not elements:
        counter.skip("no_region_text", where)
        return None
    image, kept, _ = transform(img, [RegionAnnotation(e.box, [e.text]) for e in elements], 0)
    return image, record.image_id, [(a.texts[0], a.bbox) for a in kept]


def load_grounding_eval(urls: str | Sequence[str], image_size: int, tokenizer: TokenizerLike = None,
                        max_tokens: int = 40, limit: int | None = None, max_words: int = 30,
                        include_objects: bool = False) -> GroundingEval:
    """Read up to ``limit`` images (in shard order) and every caption of their regions (and objects when
    ``include_objects``) as grounding queries (see :class:`GroundingEval`)."""
    spec, counter = _source(urls, "shards"), SkipCounter("grounding eval")
    transform = RegionTransform(image_size, train=False)
    images, image_ids, texts, boxes, index = [], [], [], [], []
    for _, raw in ordered_reader([spec], counter):
        if limit is not None and len(images) >= limit:
            break
        out = _grounding_sample(raw, spec, transform, max_words, include_objects, counter)
        if out is None:
            continue
        for text, box in out[2]:
            texts.append(text)
            boxes.append(box)
            index.append(len(images))
        images.append(out[0])
        image_ids.append(out[1])
    xywh = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    ids, mask = tokenize_captions(_tokenizer(tokenizer), texts, max_tokens)
    return GroundingEval(_stack(images, image_size), texts, ids, mask, torch.tensor(index, dtype=torch.long),
                         box_convert(xywh, "xywh", "xyxy"), box_xywh_to_cxcywh_norm(xywh, image_size).reshape(-1, 4),
                         image_ids, dict(counter.totals))
