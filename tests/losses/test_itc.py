"""ITC against an independent loop-based re-computation."""

import math

import torch
import torch.nn.functional as F

from xvlm_lit.losses.itc import contrastive_loss


def reference_itc(img, txt, temp, idx=None, valid=None):
    """Plain-python soft-target InfoNCE, both directions, over valid rows/columns only."""
    n = img.shape[0]
    valid = [True] * n if valid is None else valid.tolist()
    cols = [j for j in range(n) if valid[j]]

    def direction(a, b):
        total = 0.0
        for i in cols:
            logits = [float(a[i] @ b[j]) / temp for j in cols]
            mx = max(logits)
            lse = mx + math.log(sum(math.exp(x - mx) for x in logits))
            pos = [k for k, j in enumerate(cols) if (i == j if idx is None else int(idx[i]) == int(idx[j]))]
            total += -sum(logits[k] - lse for k in pos) / len(pos)
        return total / len(cols)

    return (direction(img, txt) + direction(txt, img)) / 2


def feats(n, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1), F.normalize(torch.randn(n, d, generator=g), dim=-1)


def test_itc_matches_reference_diagonal():
    img, txt = feats(6)
    got = contrastive_loss(img, txt, torch.tensor(0.07))
    assert abs(float(got) - reference_itc(img, txt, 0.07)) < 1e-4


def test_itc_with_duplicated_idx_uses_all_same_id_pairs_as_positives():
    img, txt = feats(6, seed=1)
    idx = torch.tensor([3, 1, 3, 2, 1, 3])
    got = contrastive_loss(img, txt, torch.tensor(0.1), idx=idx)
    assert abs(float(got) - reference_itc(img, txt, 0.1, idx)) < 1e-4
    plain = contrastive_loss(img, txt, torch.tensor(0.1))
    assert abs(float(got) - float(plain)) > 1e-3


def test_itc_invalid_entries_are_neither_rows_nor_columns():
    img, txt = feats(5, seed=2)
    valid = torch.tensor([True, True, False, True, False])
    got = contrastive_loss(img, txt, torch.tensor(0.05), valid=valid)
    assert abs(float(got) - reference_itc(img, txt, 0.05, valid=valid)) < 1e-4
    keep = valid.nonzero().flatten()
    assert torch.allclose(got, contrastive_loss(img[keep], txt[keep], torch.tensor(0.05)), atol=1e-6)


def test_itc_gradient_reaches_temp_and_features():
    img, txt = feats(4, seed=3)
    img.requires_grad_(True)
    temp = torch.tensor(0.07, requires_grad=True)
    contrastive_loss(img, txt, temp).backward()
    assert temp.grad is not None and img.grad.abs().sum() > 0
