"""One raw sample -> one transformed image-text item or region item (train: random; eval: deterministic).

Image-text item: one caption drawn from the sample's cleaned captions, ``ImageTextTransform`` (left/right swapped in
the caption on a flip), ``idx = stable_id(image_id)``.

Region item (SPEC section 5): one element (region or object text with its box) is drawn, ``RegionTransform`` crops
around it; the texts kept are the whole-image caption first (when the sample has one; no box), then the chosen
element, then the other surviving elements in random order, at most ``max_regions`` texts, never the same text twice.
Boxes come out as ``(x, y, w, h)`` in pixels of the ``R x R`` image. Concept ids: the caption gets the image id, an
element ``stable_id(image_id|box)``, so texts of one box are positives of each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from xvlm_lit.data.decode import (
    Record,
    RegionElement,
    check_size,
    clean_texts,
    decode_image,
    parse_record,
    region_elements,
    stable_id,
)
from xvlm_lit.data.skips import SkipCounter
from xvlm_lit.data.sources import SourceSpec
from xvlm_lit.data.text import swap_left_right
from xvlm_lit.data.transforms import ImageTextTransform, RegionAnnotation, RegionTransform

Box = tuple[float, float, float, float]
T = TypeVar("T")


@dataclass
class ItcItem:
    """``image`` FloatTensor [3, R, R], its caption, and ``idx`` (stable id of the image)."""

    image: torch.Tensor
    text: str
    idx: int
    image_id: str


@dataclass
class RegionText:
    """A text of a region item: ``box`` (x, y, w, h) in pixels of the R x R image, None for the whole image."""

    text: str
    box: Box | None
    idx: int


@dataclass
class RegionItem:
    """``image`` FloatTensor [3, R, R] and its texts (whole-image caption first)."""

    image: torch.Tensor
    texts: list[RegionText]
    image_id: str


@dataclass
class _Opened:
    """A parsed, decoded sample: record, cleaned captions, usable region elements, RGB image."""

    record: Record
    captions: list[str]
    elements: list[RegionElement]
    image: Image.Image


class SampleMaker:
    """Turns raw samples into items, counting every skipped sample or text in ``counter``.

    Args:
        image_size: ``R``.
        max_words: caption word limit (``clean_caption``).
        train: random augmentation and draws (an ``rng`` is then required); False = eval transforms, first choices.
        counter: where skips are counted.
        crop_scale: RandomResizedCrop area range of image-text samples (the reference's 0.2-1.0).
        randaugment: the reference's RandAugment on image-text and region samples (train only).
    """

    def __init__(self, image_size: int, max_words: int, train: bool, counter: SkipCounter,
                 crop_scale: tuple[float, float] = (0.2, 1.0), randaugment: bool = True) -> None:
        self.max_words, self.train, self.counter = max_words, train, counter
        self.itc_transform = ImageTextTransform(image_size, train=train, scale=tuple(crop_scale),
                                                randaugment=randaugment)
        self.region_transform = RegionTransform(image_size, train=train, randaugment=randaugment)

    # ------------------------------------------------------------------------------------------- shared steps
    def _open(self, raw: dict, spec: SourceSpec, rng: np.random.Generator | None, want_itc: bool,
              want_region: bool) -> _Opened | None:
        """Parse, clean and decode once; None when the sample is skipped (counted once, whatever is wanted)."""
        where = f"{spec.name}/{raw.get('__key__', '?')}"
        record = parse_record(raw, spec, self.counter)
        if record is None:
            return None
        captions = clean_texts(record.captions, self.max_words, where, self.counter)
        if want_itc and not record.captions:
            self.counter.skip("no_caption", where)
        if not want_region and not captions:
            return None
        img = decode_image(raw, where, self.counter)
        if img is None or not check_size(record, img, where, self.counter):
            return None
        elements = []
        if want_region:
            elements = region_elements(record, img.size, self.max_words, where, self.counter, rng=rng)
            if not elements:
                self.counter.skip("no_region_text", where)
        return _Opened(record, captions, elements, img)

    def _guard(self, raw: dict, spec: SourceSpec, fn: Callable[[], T]) -> T | None:
        """Run ``fn()``; any unexpected exception skips the sample as ``sample_error`` (logged with traceback)."""
        try:
            return fn()
        except Exception as exn:  # never crash a run on one sample; the traceback is logged
            self.counter.skip("sample_error", f"{spec.name}/{raw.get('__key__', '?')}: {exn!r}", exc_info=True)
            return None

    def _choice(self, items: list[str], rng: np.random.Generator | None) -> str:
        return items[int(rng.integers(len(items)))] if self.train else items[0]

    # ------------------------------------------------------------------------------------------- items
    def itc(self, raw: dict, spec: SourceSpec, rng: np.random.Generator | None = None) -> ItcItem | None:
        """An image-text item or None (counted)."""
        opened = self._guard(raw, spec, lambda: self._open(raw, spec, rng, True, False))
        return None if opened is None else self._guard(raw, spec, lambda: self._itc_item(opened, rng))

    def region(self, raw: dict, spec: SourceSpec, rng: np.random.Generator | None = None,
               max_regions: int = 5) -> RegionItem | None:
        """A region item or None (counted)."""
        opened = self._guard(raw, spec, lambda: self._open(raw, spec, rng, False, True))
        if opened is None:
            return None
        return self._guard(raw, spec, lambda: self._region_item(opened, rng, max_regions))

    def pair(self, raw: dict, spec: SourceSpec, want_itc: bool, want_region: bool,
             max_regions: int = 5) -> tuple[ItcItem | None, RegionItem | None]:
        """Both items of one sample in eval mode, parsed and decoded once (each problem counted once)."""
        opened = self._guard(raw, spec, lambda: self._open(raw, spec, None, want_itc, want_region))
        if opened is None:
            return None, None
        itc = self._guard(raw, spec, lambda: self._itc_item(opened, None)) if want_itc else None
        region = self._guard(raw, spec, lambda: self._region_item(opened, None, max_regions)) if want_region else None
        return itc, region

    def _itc_item(self, opened: _Opened, rng: np.random.Generator | None) -> ItcItem | None:
        if not opened.captions:
            return None
        image, texts, _ = self.itc_transform(opened.image, [self._choice(opened.captions, rng)], rng)
        return ItcItem(image, texts[0], stable_id(opened.record.image_id), opened.record.image_id)

    def _region_item(self, opened: _Opened, rng: np.random.Generator | None, max_regions: int) -> RegionItem | None:
        record, captions, elements = opened.record, opened.captions, opened.elements
        if not elements:
            return None
        chosen = int(rng.integers(len(elements))) if self.train else 0
        anns = [RegionAnnotation(e.box, [e.text]) for e in elements]
        image, kept, flipped = self.region_transform(opened.image, anns, chosen, rng)
        texts: list[RegionText] = []
        if captions:
            caption = self._choice(captions, rng)
            texts.append(RegionText(swap_left_right(caption) if flipped else caption, None,
                                    stable_id(record.image_id)))
        texts += self._region_texts(kept, elements, chosen, rng)
        return RegionItem(image, _unique(texts)[:max_regions], record.image_id)

    def _region_texts(self, kept: list[RegionAnnotation], elements: list[RegionElement], chosen: int,
                      rng: np.random.Generator | None) -> list[RegionText]:
        """The chosen element first, then the others (random order in training)."""
        first = [a for a in kept if a.index == chosen]
        others = [a for a in kept if a.index != chosen]
        if self.train and len(others) > 1:
            others = [others[int(i)] for i in rng.permutation(len(others))]
        return [RegionText(a.texts[0], tuple(a.bbox), elements[a.index].concept) for a in first + others]


def _unique(texts: list[RegionText]) -> list[RegionText]:
    """Drop repeated texts (first occurrence kept), so an image never carries the same text twice."""
    seen: set[str] = set()
    out = []
    for t in texts:
        if t.text not in seen:
            seen.add(t.text)
            out.append(t)
    return out
