"""Image-text retrieval, the X-VLM protocol, in one process or under DDP.

ITC similarity of every image with every text; for each image query its top-``k`` texts and for each text query
its top-``k`` images are re-ranked by the ITM positive logit (the reference uses k = 256 on COCO, 128 on
Flickr30K). TR (image -> text) counts an image as retrieved at K if ANY of its captions is in its top K; IR
(text -> image) looks for the text's single image. Ties count against the model (:class:`RecallAtK`); with the
re-ranking rules a candidate outside the top-``k`` scores ``-inf``, so a query whose positive was not re-ranked
ranks behind all ``k`` re-ranked candidates (and behind the non-positives it ties with).

Distributed layout (``torch.distributed`` initialised, ``distributed`` not False):

- each rank passes ONLY its shard of images with their global indices; the shards must cover ``0..Ni-1`` once;
- every rank encodes ALL texts (chunks of ``batch_size``; hidden states ``[Nt, L, H]`` are kept);
- the projected image features ``[Ni, E]`` are all-gathered, so every rank holds the same ``[Ni, Nt]`` matrix;
- an (image, text) pair is fused by the rank owning the image (it holds the image tokens); the IR pairs' ITM
  logits ``[Nt, k]`` are combined by an all-reduce in which each entry is filled by exactly one rank;
- TR queries are scored by the rank owning the image, IR queries (texts) are split ``rank::world``; the metric
  states (:mod:`xvlm_lit.evaluation.metrics`) are summed by torchmetrics' sync in ``compute()``.

Every rank returns the same :class:`RetrievalResult`: the metrics and the top predictions of ALL queries (the
top lists are gathered to every rank); only the optional full score rows (``keep_scores``) stay per rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from xvlm_lit.evaluation.metrics import RecallAtK
from xvlm_lit.losses.gather import all_gather_no_grad, world
from xvlm_lit.models.xvlm import XVLM
from xvlm_lit.utils.progress import progress

#: how a re-ranked candidate is scored: the ITM logit alone (reference), ITM logit + ITC similarity, or ITC only
SCORE_RULES = ("itm", "itm+itc", "itc")
PROGRESS_EVERY = 50  # batches between progress lines of a long evaluation (logged when stdout is no terminal)

ImageBatches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class RetrievalResult:
    """What :func:`evaluate_retrieval` returns (identical on every rank, except ``tr_scores``/``ir_scores``).

    Attributes:
        metrics: ``tr_r{k}``, ``ir_r{k}``, ``r_mean`` of the configured score rule and the same with an ``itc_``
            prefix for the ITC-only ranking; all percent.
        tr_top_index, tr_top_score: ``[Ni, P]`` for each image query (global order) its top ``P`` texts, best
            first, with their scores (``-inf``: not re-ranked).
        ir_top_index, ir_top_score: ``[Nt, P]`` for each text query its top ``P`` images.
        tr_query: ``[n]`` global indices of the image queries this rank scored (rows of ``tr_scores``).
        ir_query: ``[m]`` global indices of the text queries this rank scored (rows of ``ir_scores``).
        tr_scores, ir_scores: with ``keep_scores``, this rank's final score rows ``[n, Nt]`` and ``[m, Ni]``.
    """

    metrics: dict[str, float]
    tr_top_index: torch.Tensor
    tr_top_score: torch.Tensor
    ir_top_index: torch.Tensor
    ir_top_score: torch.Tensor
    tr_query: torch.Tensor
    ir_query: torch.Tensor
    tr_scores: torch.Tensor | None = None
    ir_scores: torch.Tensor | None = None

    def predictions(self) -> dict[str, list[dict]]:
        """JSON-ready top lists: ``{"text_retrieval": [{"image", "texts", "scores"}], "image_retrieval":
        [{"text", "images", "scores"}]}``; a ``-inf`` score (candidate not re-ranked) becomes ``None``."""
        def rows(index: torch.Tensor, score: torch.Tensor, query: str, cand: str) -> list[dict]:
            return [{query: q, cand: i, "scores": [s if math.isfinite(s) else None for s in v]}
                    for q, (i, v) in enumerate(zip(index.tolist(), score.tolist(), strict=True))]
        return {"text_retrieval": rows(self.tr_top_index, self.tr_top_score, "image", "texts"),
                "image_retrieval": rows(self.ir_top_index, self.ir_top_score, "text", "images")}


def chance_recall(num_images: int, num_texts: int, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected R@K of a random ranking with one image per text (and ``num_texts / num_images`` texts per image)."""
    per_image = max(1, round(num_texts / num_images))
    out = {}
    for k in ks:
        miss = 1.0
        for j in range(min(k, num_texts)):  # all k draws avoid the image's texts
            miss *= max(0.0, (num_texts - per_image - j) / (num_texts - j))
        out[f"tr_r{k}"] = 100 * (1 - miss)
        out[f"ir_r{k}"] = 100 * min(1.0, k / num_images)
    return out


def _named(tr: dict[int, float], ir: dict[int, float], prefix: str = "") -> dict[str, float]:
    """``{prefix}tr_r{k}``, ``{prefix}ir_r{k}`` and their mean ``{prefix}r_mean``."""
    out = {f"{prefix}tr_r{k}": v for k, v in tr.items()} | {f"{prefix}ir_r{k}": v for k, v in ir.items()}
    out[f"{prefix}r_mean"] = sum(out.values()) / len(out)
    return out


def retrieval_metrics(scores_i2t: torch.Tensor, text_to_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
                      ) -> dict[str, float]:
    """TR@K (rows: image queries, best of their texts) and IR@K (columns: text queries) of one local score
    matrix ``scores_i2t [Ni, Nt]``, ``text_to_image [Nt]``; no distributed sync."""
    t2i = text_to_image.to(scores_i2t.device).long()
    images = torch.arange(scores_i2t.shape[0], device=scores_i2t.device)
    positive = images[:, None] == t2i[None, :]  # [Ni, Nt]
    tr, ir = RecallAtK(ks, sync_on_compute=False), RecallAtK(ks, sync_on_compute=False)
    tr.update(scores_i2t, positive)
    ir.update(scores_i2t.t(), positive.t())
    return _named(tr.compute(), ir.compute())


def image_shard(num_images: int, rank: int, size: int) -> torch.Tensor:
    """Global indices ``[n]`` of the images rank ``rank`` of ``size`` evaluates (``rank::size``)."""
    return torch.arange(rank, num_images, size)


def _world(distributed: bool | None) -> tuple[int, int]:
    """(rank, size) of the evaluation: (0, 1) when ``distributed`` is False (e.g. run on rank 0 only)."""
    if distributed is False:
        return 0, 1
    rank, size = world()
    if distributed and size == 1 and not dist.is_initialized():
        raise ValueError("distributed=True but torch.distributed is not initialised")
    return rank, size


def _image_batches(images: torch.Tensor | ImageBatches, image_index: torch.Tensor | None, batch_size: int,
                   size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images [b, 3, R, R], global index [b])`` batches of this rank's images."""
    if not isinstance(images, torch.Tensor):
        if image_index is not None:
            raise ValueError("image_index is only for an image tensor: batches carry their own indices")
        yield from ((imgs, torch.as_tensor(idx).long()) for imgs, idx in images)
        return
    if image_index is None:
        if size > 1:
            raise ValueError("under torch.distributed pass image_index: the global index of each image of this "
                             "rank's shard (see image_shard)")
        image_index = torch.arange(len(images))
    if len(image_index) != len(images):
        raise ValueError(f"{len(images)} images but {len(image_index)} indices")
    for s in range(0, len(images), batch_size):
        yield images[s:s + batch_size], torch.as_tensor(image_index[s:s + batch_size]).long()


@torch.no_grad()
def encode_images(model: XVLM, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens ``[n, 1+N, Dv]``, ITC features ``[n, E]`` float32, global index ``[n]``) of this rank's images,
    on the model's device; ``n`` may be 0."""
    device = next(model.parameters()).device
    tokens, feats, index = [], [], []
    for imgs, idx in progress(batches, "retrieval: encoding images", every=PROGRESS_EVERY, unit="batches"):
        tok = model.encode_image(imgs.to(device))
        tokens.append(tok)
        feats.append(model.image_feat(tok).float())
        index.append(idx.to(device))
    if not tokens:
        dim = model.vision_proj.out_features
        return (torch.empty(0, device=device), torch.empty(0, dim, device=device),
                torch.empty(0, dtype=torch.long, device=device))
    return torch.cat(tokens), torch.cat(feats), torch.cat(index)


@torch.no_grad()
def encode_texts(model: XVLM, text_ids: torch.Tensor, text_mask: torch.Tensor, batch_size: int = 64
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden ``[Nt, L, H]``, ITC features ``[Nt, E]`` float32) of all texts ``[Nt, L]``, in chunks."""
    device = next(model.parameters()).device
    hidden, feats = [], []
    for s in range(0, len(text_ids), batch_size):
        h = model.encode_text(text_ids[s:s + batch_size].to(device), text_mask[s:s + batch_size].to(device))
        hidden.append(h)
        feats.append(model.text_feat(h).float())
    return torch.cat(hidden), torch.cat(feats)


def gather_rows(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Every rank's ``[n_r, ...]`` tensor (``n_r`` may differ between ranks), on every rank, in rank order."""
    if size == 1:
        return [x]
    counts = all_gather_no_grad(torch.tensor([x.shape[0]], device=x.device)).tolist()
    padded = x.new_zeros((max(max(counts), 1), *x.shape[1:]))
    padded[:x.shape[0]] = x
    parts = all_gather_no_grad(padded).view(size, -1, *x.shape[1:])
    return [parts[r, :n] for r, n in enumerate(counts)]


def _ownership(parts: list[torch.Tensor]) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(Ni, owner rank ``[Ni]``, position in its owner's shard ``[Ni]``) from every rank's global indices."""
    index = torch.cat(parts)
    num = len(index)
    if num == 0 or not torch.equal(index.sort().values, torch.arange(num, device=index.device)):
        raise ValueError(f"the image shards must hold the global indices 0..Ni-1 exactly once (got {num} images, "
                         f"indices {index.sort().values[:10].tolist()}...)")
    owner, local = torch.empty_like(index), torch.empty_like(index)
    for r, p in enumerate(parts):
        owner[p] = r
        local[p] = torch.arange(len(p), device=p.device)
    return num, owner, local


def itc_similarity(image_feat: torch.Tensor, text_feat: torch.Tensor, chunk: int = 1024,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[Ni, Nt]`` = ``image_feat [Ni, E]`` @ ``text_feat [Nt, E]``^T, stored in ``dtype``, rows in chunks."""
    out = torch.empty(image_feat.shape[0], text_feat.shape[0], dtype=dtype, device=image_feat.device)
    for s in range(0, image_feat.shape[0], chunk):
        out[s:s + chunk] = (image_feat[s:s + chunk] @ text_feat.t()).to(dtype)
    return out


def topk_rows(sim: torch.Tensor, rows: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Indices ``[len(rows), k]`` of the ``k`` largest entries of each selected row of ``sim [R, C]``."""
    parts = [sim[rows[s:s + chunk]].topk(k, dim=1).indices for s in range(0, len(rows), chunk)]
    return torch.cat(parts) if parts else torch.empty(0, k, dtype=torch.long, device=sim.device)


@torch.no_grad()
def itm_scores(model: XVLM, image_tokens: torch.Tensor, image: torch.Tensor, text_hidden: torch.Tensor,
               text_mask: torch.Tensor, text: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """ITM positive logits ``[P]`` (float32) of the pairs (``image_tokens[image[p]]``, ``text[p]``), fused in
    chunks of ``batch_size`` pairs. ``image_tokens [n, 1+N, Dv]``, ``text_hidden [Nt, L, H]``, ``text_mask
    [Nt, L]``, ``image``/``text [P]`` indices into them."""
    if len(text) == 0:  # (split of an empty tensor still yields one empty chunk)
        return torch.empty(0, device=text_hidden.device)
    chunks = zip(image.split(batch_size), text.split(batch_size), strict=True)
    out = [model.itm_logits(model.fuse(text_hidden[t], text_mask[t], image_tokens[i]))[:, 1].float()
           for i, t in progress(chunks, "retrieval: ITM re-ranking", total=math.ceil(len(text) / batch_size),
                                every=PROGRESS_EVERY, unit="pair batches")]
    return torch.cat(out)


@dataclass
class _Rerank:
    """ITM logits of the re-ranked candidates: TR ``[n, kt]`` for this rank's images, IR ``[Nt, ki]`` for all texts."""

    tr_cand: torch.Tensor
    tr_itm: torch.Tensor
    ir_cand: torch.Tensor
    ir_itm: torch.Tensor


@torch.no_grad()
def _rerank(model: XVLM, sim: torch.Tensor, own: torch.Tensor, tokens: torch.Tensor, owner: torch.Tensor,
            local: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor, k: int, pair_batch_size: int,
            rank: int, size: int) -> _Rerank:
    """ITM logits of each own image's top-k texts and of each text's top-k images (pairs fused by the rank owning
    the image; a pair in both lists is fused once). ``sim [Ni, Nt]``, ``own [n]`` this rank's global images."""
    num_images, num_texts = sim.shape
    tr_cand = topk_rows(sim, own, min(k, num_texts))  # [n, kt]
    ir_cand = sim.topk(min(k, num_images), dim=0).indices.t().contiguous()  # [Nt, ki]
    texts = torch.arange(num_texts, device=sim.device)
    tr_keys = (own[:, None] * num_texts + tr_cand).flatten()
    ir_owned = owner[ir_cand] == rank  # [Nt, ki]
    ir_keys = (ir_cand * num_texts + texts[:, None])[ir_owned]
    pairs, inverse = torch.cat([tr_keys, ir_keys]).unique(return_inverse=True)
    values = itm_scores(model, tokens, local[pairs // num_texts], hidden, mask, pairs % num_texts, pair_batch_size)
    tr_itm = values[inverse[:len(tr_keys)]].view(tr_cand.shape)
    ir_itm = torch.zeros(ir_cand.shape, device=sim.device)
    ir_itm[ir_owned] = values[inverse[len(tr_keys):]]
    if size > 1:
        dist.all_reduce(ir_itm)  # each entry is non-zero on its owner only: the sum is exact
    return _Rerank(tr_cand, tr_itm, ir_cand, ir_itm)


def apply_score_rule(sim_rows: torch.Tensor, cand: torch.Tensor | None, itm: torch.Tensor | None, rule: str
                     ) -> torch.Tensor:
    """Final scores ``[q, C]`` of queries with ITC similarities ``sim_rows [q, C]`` whose candidates ``cand
    [q, k]`` have ITM logits ``itm [q, k]``: ``"itc"`` keeps ``sim_rows``; ``"itm"`` / ``"itm+itc"`` give the
    candidates ``itm`` / ``itm + sim`` and every other candidate ``-inf``."""
    if rule == "itc":
        return sim_rows
    value = itm if rule == "itm" else itm + sim_rows.gather(1, cand)
    return torch.full_like(sim_rows, float("-inf")).scatter_(1, cand, value)


class _Side:
    """One retrieval direction over ``num_candidates`` candidates: metrics of the final and the ITC-only
    ranking, this rank's top lists (and score rows with ``keep``)."""

    def __init__(self, num_candidates: int, ks: Sequence[int], top: int, sync: bool, device: torch.device,
                 keep: bool) -> None:
        self.final = RecallAtK(ks, sync_on_compute=sync).to(device)
        self.itc = RecallAtK(ks, sync_on_compute=sync).to(device)
        self.num_candidates, self.top, self.keep, self.device = num_candidates, min(top, num_candidates), keep, device
        self.index: list[torch.Tensor] = []
        self.score: list[torch.Tensor] = []
        self.rows: list[torch.Tensor] = []

    def update(self, sim_rows: torch.Tensor, scores: torch.Tensor, positive: torch.Tensor) -> None:
        """Score queries: ``sim_rows``, ``scores``, ``positive`` all ``[q, C]``."""
        self.itc.update(sim_rows, positive)
        self.final.update(scores, positive)
        best = scores.topk(self.top, dim=1)
        self.index.append(best.indices)
        self.score.append(best.values)
        if self.keep:
            self.rows.append(scores.cpu())

    def metrics(self) -> tuple[dict[int, float], dict[int, float]]:
        """(final, ITC-only) R@K over all ranks (collective under sync)."""
        if not self.final.update_called:  # a rank without queries still takes part in the sync
            empty = torch.empty(0, self.num_candidates, device=self.device)
            self.update(empty, empty, empty.bool())
        return self.final.compute(), self.itc.compute()

    def tops(self, query: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top lists of ALL queries ``[Q, P]`` (candidate indices, scores) on CPU, gathered from every rank;
        ``query [q]`` are the global indices of this rank's queries."""
        queries = torch.cat(gather_rows(query, size))
        indices = torch.cat(gather_rows(torch.cat(self.index), size))
        scores = torch.cat(gather_rows(torch.cat(self.score), size))
        out_i = torch.empty_like(indices)
        out_s = torch.empty_like(scores)
        out_i[queries] = indices
        out_s[queries] = scores
        return out_i.cpu(), out_s.cpu()

    def kept_rows(self) -> torch.Tensor | None:
        """This rank's final score rows ``[q, C]`` (CPU) with ``keep``, else None."""
        return torch.cat(self.rows) if self.keep else None


def _check_options(score: str, k: int) -> None:
    if score not in SCORE_RULES:
        raise ValueError(f"score={score!r}: choose one of {SCORE_RULES}")
    if k < 1:
        raise ValueError(f"k={k}: re-rank at least one candidate")


def _check_texts(text_to_image: torch.Tensor, num_images: int) -> None:
    """Every text names an image, every image has a text (the same verdict on every rank)."""
    if text_to_image.numel() and (text_to_image.min() < 0 or text_to_image.max() >= num_images):
        raise ValueError(f"text_to_image must index the {num_images} images")
    captions = torch.bincount(text_to_image, minlength=num_images)
    if (captions == 0).any():
        bad = (captions == 0).nonzero().flatten()[:5].tolist()
        raise ValueError(f"images without any text (first: {bad}): text retrieval needs a caption per image")


@torch.no_grad()
def evaluate_retrieval(model: XVLM, images: torch.Tensor | ImageBatches, text_ids: torch.Tensor,
                       text_mask: torch.Tensor, text_to_image: torch.Tensor, *, image_index: torch.Tensor | None = None,
                       k: int = 256, score: str = "itm", batch_size: int = 64, pair_batch_size: int = 128,
                       ks: Sequence[int] = (1, 5, 10), top: int = 5, sim_dtype: torch.dtype = torch.float32,
                       distributed: bool | None = None, keep_scores: bool = False) -> RetrievalResult:
    """Retrieval metrics and top predictions (see the module doc for the distributed layout).

    Args:
        images: this rank's images ``[n, 3, R, R]`` (with ``image_index``) or an iterable of
            ``(images [b, 3, R, R], global index [b])`` batches. One process: all images.
        text_ids, text_mask: ALL texts ``[Nt, L]`` (the same on every rank).
        text_to_image: ``[Nt]`` global image index of each text; every image needs at least one text.
        image_index: ``[n]`` global index of each image of the tensor; default ``arange(n)`` in one process.
        k: candidates re-ranked per query (256 COCO, 128 Flickr30K); ``k >= Nt`` (``>= Ni``) re-ranks all.
        score: ``"itm"`` (reference: ITM logit, others ``-inf``), ``"itm+itc"`` or ``"itc"`` (no re-ranking).
        batch_size: images / texts encoded at once, and query rows scored at once.
        pair_batch_size: (image, text) pairs fused at once.
        ks: the K of R@K. top: length of the returned top lists.
        sim_dtype: storage of the ``[Ni, Nt]`` ITC matrix (``torch.float16`` halves it).
        distributed: None = use the process group when initialised; False = this process alone, even under an
            initialised group (e.g. evaluation on rank 0 only).
        keep_scores: also return this rank's full final score rows (memory ``[n, Nt] + [m, Ni]``).
    """
    _check_options(score, k)
    rank, size = _world(distributed)
    was_training = model.training
    model.eval()
    try:
        return _evaluate(model, _image_batches(images, image_index, batch_size, size), text_ids, text_mask,
                         text_to_image, k, score, batch_size, pair_batch_size, ks, top, sim_dtype, rank, size,
                         keep_scores)
    finally:
        model.train(was_training)


def _evaluate(model: XVLM, batches: Iterator, text_ids: torch.Tensor, text_mask: torch.Tensor,
              text_to_image: torch.Tensor, k: int, score: str, batch_size: int, pair_batch_size: int,
              ks: Sequence[int], top: int, sim_dtype: torch.dtype, rank: int, size: int, keep: bool
              ) -> RetrievalResult:
    """The body of :func:`evaluate_retrieval`."""
    tokens, image_feat, own = encode_images(model, batches)
    parts = gather_rows(own, size)
    num_images, owner, local = _ownership(parts)
    device = image_feat.device
    t2i = torch.as_tensor(text_to_image).to(device).long()
    _check_texts(t2i, num_images)
    all_feat = torch.empty(num_images, image_feat.shape[1], device=device)
    all_feat[torch.cat(parts)] = torch.cat(gather_rows(image_feat, size))
    hidden, text_feat = encode_texts(model, text_ids, text_mask, batch_size)
    mask = text_mask.to(device)
    sim = itc_similarity(all_feat, text_feat, batch_size, sim_dtype)  # [Ni, Nt], the same on every rank
    rr = None if score == "itc" else _rerank(model, sim, own, tokens, owner, local, hidden, mask, k,
                                             pair_batch_size, rank, size)
    del tokens, hidden
    tr = _Side(len(t2i), ks, top, size > 1, device, keep)
    ir = _Side(num_images, ks, top, size > 1, device, keep)
    images = torch.arange(num_images, device=device)
    for s in range(0, len(own), batch_size):  # TR: this rank's images
        rows = sim[own[s:s + batch_size]].float()
        cand, itm = (None, None) if rr is None else (rr.tr_cand[s:s + batch_size], rr.tr_itm[s:s + batch_size])
        tr.update(rows, apply_score_rule(rows, cand, itm, score), own[s:s + batch_size, None] == t2i[None])
    mine = torch.arange(rank, len(t2i), size, device=device)
    for s in range(0, len(mine), batch_size):  # IR: texts rank::size
        t = mine[s:s + batch_size]
        rows = sim[:, t].t().float()
        cand, itm = (None, None) if rr is None else (rr.ir_cand[t], rr.ir_itm[t])
        ir.update(rows, apply_score_rule(rows, cand, itm, score), t2i[t, None] == images[None])
    return _result(tr, ir, own, mine, size)


def _result(tr: _Side, ir: _Side, own: torch.Tensor, mine: torch.Tensor, size: int) -> RetrievalResult:
    """Synced metrics and gathered top lists (collective: every rank calls it)."""
    (tr_final, tr_itc), (ir_final, ir_itc) = tr.metrics(), ir.metrics()
    metrics = _named(tr_final, ir_final) | _named(tr_itc, ir_itc, "itc_")
    tr_i, tr_s = tr.tops(own, size)
    ir_i, ir_s = ir.tops(mine, size)
    return RetrievalResult(metrics, tr_i, tr_s, ir_i, ir_s, own.cpu(), mine.cpu(), tr.kept_rows(), ir.kept_rows())
