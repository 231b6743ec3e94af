"""The inference object :func:`xvlm_lit.load` returns: score, retrieve, ground, caption, answer.

Every method takes one input or a batch (a list, or a ``[B, 3, H, W]`` tensor of images) and preprocesses exactly
as the checkpoint's evaluation does (:class:`~xvlm_lit.inference.preprocess.Preprocessor`); one input in gives one
result out, a list gives a list. Nothing here needs a Lightning Trainer or a Hydra run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from xvlm_lit.inference.config import CheckpointConfig
from xvlm_lit.inference.errors import InferenceError
from xvlm_lit.inference.gallery import GalleryCache, ImageGallery, TextGallery, path_key
from xvlm_lit.inference.heads import Heads
from xvlm_lit.inference.images import ImageLike, as_image_list, to_pil
from xvlm_lit.inference.preprocess import Preprocessor
from xvlm_lit.inference.results import Box, Match, Scores


def _text_list(texts: str | Sequence[str]) -> tuple[list[str], bool]:
    return ([texts], True) if isinstance(texts, str) else (list(texts), False)


def _is_text_query(query: Any) -> bool:
    """Strings are texts unless they name an existing file (``pathlib.Path`` objects are always images)."""
    first = query if isinstance(query, str) or not isinstance(query, Sequence) or not query else query[0]
    return isinstance(first, str) and not Path(first).expanduser().is_file()


def _broadcast(n_images: int, n_texts: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (image, text) of paired inputs: equal lengths, or one side of length 1 repeated."""
    n = max(n_images, n_texts)
    if n_images not in (1, n) or n_texts not in (1, n):
        raise InferenceError(f"{what}: {n_images} images and {n_texts} texts: give as many of each, or one of "
                             "either side")
    return torch.arange(n) % n_images, torch.arange(n) % n_texts


class Predictor:
    """A checkpoint ready for inference (build it with :func:`xvlm_lit.load`).

    Attributes:
        model: the network, in eval mode on ``device``; pre: the evaluation preprocessing; heads: which heads the
        checkpoint has; config: where the settings came from; batch_size: images/texts encoded at once;
        rerank: candidates re-ranked by ITM in :meth:`retrieve` (the zero-shot evaluation's ``rerank_k``).
    """

    def __init__(self, model: nn.Module, pre: Preprocessor, heads: Heads, config: CheckpointConfig,
                 device: torch.device, batch_size: int = 32, rerank: int = 16) -> None:
        self.model, self.pre, self.heads, self.config = model.eval().to(device), pre, heads, config
        self.device, self.batch_size, self.rerank = device, batch_size, rerank
        self._galleries = GalleryCache()

    # ------------------------------------------------------------------ encoding
    def _images(self, images: ImageLike | Sequence[ImageLike]) -> tuple[list[Image.Image], bool]:
        items, single = as_image_list(images)
        if not items:
            raise InferenceError("no image given")
        return [to_pil(x) for x in items], single

    @torch.no_grad()
    def encode_images(self, pils: Sequence[Image.Image]) -> torch.Tensor:
        """Image tokens ``[B, 1+N, Dv]`` of RGB PIL images (evaluation transform, chunks of ``batch_size``)."""
        return torch.cat([self.model.encode_image(self.pre.images(pils[s:s + self.batch_size]).to(self.device))
                          for s in range(0, len(pils), self.batch_size)])

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden ``[T, L, H]``, mask ``[T, L]``) of the text layers for cleaned, tokenized ``texts``."""
        if not texts:
            raise InferenceError("no text given")
        ids, mask = self.pre.texts(texts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = torch.cat([self.model.encode_text(ids[s:s + self.batch_size], mask[s:s + self.batch_size])
                            for s in range(0, len(ids), self.batch_size)])
        return hidden, mask

    @torch.no_grad()
    def _fuse(self, tokens: torch.Tensor, image: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor,
              text: torch.Tensor) -> torch.Tensor:
        """Fusion [CLS]-sequence states ``[P, L, H]`` of the pairs (``tokens[image[p]]``, ``hidden[text[p]]``)."""
        out = [self.model.fuse(hidden[t], mask[t], tokens[i])
               for i, t in zip(image.split(self.batch_size), text.split(self.batch_size), strict=True)]
        return torch.cat(out)

    def _itm(self, tokens: torch.Tensor, image: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor,
             text: torch.Tensor) -> torch.Tensor:
        """ITM logits ``[P, 2]`` of the pairs (index 1 = match)."""
        if len(image) == 0:
            return torch.empty(0, 2, device=self.device)
        image, text = image.to(self.device), text.to(self.device)
        return self.model.itm_logits(self._fuse(tokens, image, hidden, mask, text)).float()

    # ------------------------------------------------------------------ score
    @torch.no_grad()
    def score(self, images: ImageLike | Sequence[ImageLike], texts: str | Sequence[str],
              paired: bool = False) -> Scores:
        """ITC similarity and ITM probability of every image with every text (``[Ni, Nt]``), or of the pairs
        ``(images[i], texts[i])`` when ``paired`` (``[N]``; one image or one text is repeated)."""
        self.heads.require("itc")
        self.heads.require("itm")
        pils, _ = self._images(images)
        texts, _ = _text_list(texts)
        tokens = self.encode_images(pils)
        hidden, mask = self.encode_texts(texts)
        img_feat, txt_feat = self.model.image_feat(tokens).float(), self.model.text_feat(hidden).float()
        if paired:
            i, t = _broadcast(len(pils), len(texts), "score(paired=True)")
            itc = (img_feat[i.to(self.device)] * txt_feat[t.to(self.device)]).sum(-1)
            shape: tuple[int, ...] = (len(i),)
        else:
            i, t = torch.arange(len(pils)).repeat_interleave(len(texts)), torch.arange(len(texts)).repeat(len(pils))
            itc = img_feat @ txt_feat.t()
            shape = (len(pils), len(texts))
        logits = self._itm(tokens, i, hidden, mask, t)
        return Scores(itc.cpu(), logits.softmax(-1)[:, 1].view(shape).cpu(), logits[:, 1].view(shape).cpu())

    # ------------------------------------------------------------------ retrieval
    @torch.no_grad()
    def index_images(self, images: ImageLike | Sequence[ImageLike]) -> ImageGallery:
        """Encode a gallery of images once (reuse it in :meth:`retrieve`)."""
        self.heads.require("itc")
        items, _ = as_image_list(images)
        key = path_key(items)
        cached = self._galleries.get(key)
        if isinstance(cached, ImageGallery):
            return cached
        pils, _ = self._images(items)
        tokens = self.encode_images(pils)
        names = [str(x) if key is not None else None for x in items]
        gallery = ImageGallery(names, tokens, self.model.image_feat(tokens).float())
        self._galleries.put(key, gallery)
        return gallery

    @torch.no_grad()
    def index_texts(self, texts: str | Sequence[str]) -> TextGallery:
        """Encode a gallery of texts once (reuse it in :meth:`retrieve`)."""
        self.heads.require("itc")
        texts, _ = _text_list(texts)
        key = ("texts", tuple(texts))
        cached = self._galleries.get(key)
        if isinstance(cached, TextGallery):
            return cached
        hidden, mask = self.encode_texts(texts)
        gallery = TextGallery(texts, hidden, mask, self.model.text_feat(hidden).float())
        self._galleries.put(key, gallery)
        return gallery

    @torch.no_grad()
    def retrieve(self, query: Any, gallery: Any, k: int = 5, rerank: int | None = None
                 ) -> list[Match] | list[list[Match]]:
        """The ``k`` best gallery entries for each query, best first.

        Text query (a string or a list of strings that are not file paths) -> a gallery of images (paths, PIL
        images, tensors, or an :class:`ImageGallery`); image query (a path, PIL image, tensor, or a list) -> a
        gallery of texts (a list of strings or a :class:`TextGallery`). Ranking is the evaluation's: ITC
        similarity, then its top ``rerank`` candidates (default :attr:`rerank`; 0 = ITC only) re-ordered by the
        ITM match logit, ahead of all others. Galleries given as
        paths or texts are encoded once and cached (the 4 most recent).
        """
        rerank = self.rerank if rerank is None else rerank
        if rerank > 0:
            self.heads.require("itm", "set rerank=0 to rank by ITC alone")
        if _is_text_query(query):
            return self._text_to_image(query, gallery, k, rerank)
        return self._image_to_text(query, gallery, k, rerank)

    def _text_to_image(self, query, gallery, k: int, rerank: int):
        texts, single = _text_list(query)
        g = gallery if isinstance(gallery, ImageGallery) else self.index_images(gallery)
        hidden, mask = self.encode_texts(texts)
        sim = self.model.text_feat(hidden).float() @ g.feats.t()  # [Q, N]
        out = []
        for q in range(len(texts)):
            def itm(cand: torch.Tensor, q: int = q) -> torch.Tensor:
                return self._itm(g.tokens, cand, hidden, mask, torch.full_like(cand, q))
            out.append(self._rank(sim[q], itm, k, rerank, g.items))
        return out[0] if single else out

    def _image_to_text(self, query, gallery, k: int, rerank: int):
        pils, single = self._images(query)
        if isinstance(gallery, str):
            raise InferenceError("an image query needs a gallery of texts as a list of strings")
        g = gallery if isinstance(gallery, TextGallery) else self.index_texts(list(gallery))
        tokens = self.encode_images(pils)
        sim = self.model.image_feat(tokens).float() @ g.feats.t()  # [Q, N]
        out = []
        for q in range(len(pils)):
            def itm(cand: torch.Tensor, q: int = q) -> torch.Tensor:
                return self._itm(tokens, torch.full_like(cand, q), g.hidden, g.mask, cand)
            out.append(self._rank(sim[q], itm, k, rerank, g.items))
        return out[0] if single else out

    @staticmethod
    def _rank(sim: torch.Tensor, itm, k: int, rerank: int, items: Sequence) -> list[Match]:
        """Top ``k`` of one query's ITC row ``sim [N]``, its top ``rerank`` re-ordered by ``itm(cand) -> [c, 2]``."""
        n = len(sim)
        order = sim.argsort(descending=True, stable=True)
        logits = {}
        if rerank > 0:
            cand = order[:min(rerank, n)]
            raw = itm(cand)
            by_itm = raw[:, 1].argsort(descending=True, stable=True)
            logits = {int(cand[j]): raw[j] for j in range(len(cand))}
            order = torch.cat([cand[by_itm], order[len(cand):]])
        matches = []
        for r, idx in enumerate(order[:k].tolist()):
            raw = logits.get(idx)
            matches.append(Match(r, idx, items[idx], float(sim[idx]),
                                 None if raw is None else float(raw[1]),
                                 None if raw is None else float(raw.softmax(-1)[1])))
        return matches

    # ------------------------------------------------------------------ grounding
    @torch.no_grad()
    def ground(self, images: ImageLike | Sequence[ImageLike], texts: str | Sequence[str]) -> Box | list[Box]:
        """The box of each text in its image, in ORIGINAL image pixels (:class:`Box`: ``xyxy``, ``xywh``), as the
        grounding evaluation computes it: box head on the fusion [CLS] of the whole (resized) image and the text,
        normalised (cx, cy, w, h) scaled by the original width and height. Paired inputs; one image or one text
        is repeated."""
        from xvlm_lit.tasks.grounding import to_original_pixels  # the evaluation's own conversion

        self.heads.require("box")
        pils, single_image = self._images(images)
        texts, single_text = _text_list(texts)
        i, t = _broadcast(len(pils), len(texts), "ground")
        tokens = self.encode_images(pils)
        hidden, mask = self.encode_texts(texts)
        pred = self.model.predict_box(self._fuse(tokens, i.to(self.device), hidden, mask, t.to(self.device)))
        pred = pred.float().cpu()
        sizes = torch.tensor([pils[j].size for j in i.tolist()])
        xyxy = to_original_pixels(pred, sizes)
        boxes = [Box(tuple(xyxy[n].tolist()), tuple(pred[n].tolist()), tuple(pils[int(i[n])].size),
                     texts[int(t[n])]) for n in range(len(i))]
        return boxes[0] if single_image and single_text else boxes

    # ------------------------------------------------------------------ caption / answer
    def caption(self, images: ImageLike | Sequence[ImageLike], **decoding: Any) -> str | list[str]:
        """Captions by beam search with the run's decoding settings (``task.prompt``, ``num_beams``,
        ``max_length``, ``min_length``, ``length_penalty``; override them as keyword arguments)."""
        from xvlm_lit.inference.generate import caption_images

        self.heads.require("caption")
        pils, single = self._images(images)
        out = caption_images(self, pils, decoding)
        return out[0] if single else out

    def answer(self, images: ImageLike | Sequence[ImageLike], questions: str | Sequence[str],
               candidates: Sequence[str] | None = None) -> str | list[str]:
        """Answers with the VQA run's protocol: rank ``candidates`` (default: the run's answer list) with
        ``task.k_test``, or generate when there is no list (or ``task.inference=generate``)."""
        from xvlm_lit.inference.generate import answer_questions

        self.heads.require("answer")
        pils, single_image = self._images(images)
        questions, single_q = _text_list(questions)
        i, q = _broadcast(len(pils), len(questions), "answer")
        out = answer_questions(self, [pils[j] for j in i.tolist()], [questions[j] for j in q.tolist()], candidates)
        return out[0] if single_image and single_q else out
