"""Image-text retrieval: ITC similarity, top-k re-ranked by the ITM positive logit, R@K."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xvlm_lit.models.xvlm import XVLM


def recall_at_k(scores: torch.Tensor, positives: Sequence[Sequence[int]], ks: Sequence[int] = (1, 5, 10)
                ) -> dict[int, float]:
    """Percentage of queries (rows of ``scores [Q, C]``) with a positive among the top-k candidates."""
    order = scores.argsort(dim=1, descending=True)
    rank = torch.full((scores.shape[0],), scores.shape[1], dtype=torch.long)
    for q, pos in enumerate(positives):
        hits = torch.isin(order[q], torch.as_tensor(list(pos), dtype=torch.long)).nonzero()
        if len(hits):
            rank[q] = int(hits[0])
    return {k: float((rank < k).float().mean() * 100) for k in ks}


def retrieval_metrics(score_i2t: torch.Tensor, text_to_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
                      ) -> dict[str, float]:
    """TR@K (image -> its texts) and IR@K (text -> its image) from ``score_i2t [Ni, Nt]``; ``text_to_image [Nt]``."""
    img_pos = [torch.nonzero(text_to_image == i).flatten().tolist() for i in range(score_i2t.shape[0])]
    txt_pos = [[int(i)] for i in text_to_image]
    tr, ir = recall_at_k(score_i2t, img_pos, ks), recall_at_k(score_i2t.t(), txt_pos, ks)
    out = {f"tr_r{k}": tr[k] for k in ks} | {f"ir_r{k}": ir[k] for k in ks}
    out["r_mean"] = sum(out.values()) / len(out)
    return out


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


@torch.no_grad()
def itm_rerank(model: XVLM, itc: torch.Tensor, image_tokens: torch.Tensor, text_hidden: torch.Tensor,
               text_mask: torch.Tensor, k: int, chunk: int = 64) -> torch.Tensor:
    """Scores ``[Ni, Nt]``: for each image its top-``k`` texts by ITC get their ITM positive logit, others -100.

    Args:
        itc: ``[Ni, Nt]`` contrastive similarities.
        image_tokens: ``[Ni, 1+N, Dv]``; text_hidden ``[Nt, L, H]``; text_mask ``[Nt, L]``.
    """
    k = min(k, itc.shape[1])
    out = torch.full_like(itc, -100.0)
    top = itc.topk(k, dim=1).indices  # [Ni, k]
    pairs = torch.stack([torch.arange(itc.shape[0]).repeat_interleave(k), top.flatten()], 1)
    for start in range(0, len(pairs), chunk):
        i, t = pairs[start:start + chunk].unbind(1)
        fused = model.fuse(text_hidden[t], text_mask[t], image_tokens[i], None)
        out[i, t] = model.itm_logits(fused)[:, 1].float()
    return out


@torch.no_grad()
def retrieval_scores(model: XVLM, images: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor,
                     k: int = 16, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(ITC similarities, ITM re-ranked scores), both ``[Ni, Nt]``, for images ``[Ni,3,R,R]`` and texts ``[Nt,L]``."""
    device = next(model.parameters()).device
    tokens = torch.cat([model.encode_image(images[s:s + batch_size].to(device))
                        for s in range(0, len(images), batch_size)])
    hidden = torch.cat([model.encode_text(text_ids[s:s + batch_size].to(device),
                                          text_mask[s:s + batch_size].to(device))
                        for s in range(0, len(text_ids), batch_size)])
    itc = model.image_feat(tokens) @ model.text_feat(hidden).t()
    reranked = itm_rerank(model, itc, tokens, hidden, text_mask.to(device), k)
    return itc.float().cpu(), reranked.cpu()
