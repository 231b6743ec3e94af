"""StepCache region encodings against a by-hand masked pooling of the encoded image (not the cache itself)."""

import torch
import torch.nn.functional as F

from xvlm_lit.losses.base import StepCache
from xvlm_lit.losses.itc import contrastive_loss
from xvlm_lit.testing import micro_xvlm, random_batch


def hand_regions(model, batch):
    """Per text: ``[mean of the in-box patch tokens, every patch token]`` of its image, and its patch mask."""
    encoded = model.encode_image(batch.images)  # [B, 1+N, D]
    tokens, masks = [], []
    for t in range(batch.num_texts):
        image = encoded[int(batch.image_index[t])]
        inside = batch.patch_mask[t, 1:].bool()
        assert 0 < int(inside.sum()) < inside.numel()  # a real region: neither empty nor the whole image
        tokens.append(torch.cat([image[1:][inside].mean(0, keepdim=True), image[1:]]))
        masks.append(torch.cat([torch.ones(1), inside.float()]))
    return torch.stack(tokens), torch.stack(masks)


def test_region_tokens_pool_only_the_patches_inside_the_box():
    model = micro_xvlm().eval()
    batch = random_batch(model, 2, texts_per_image=3, seed=4)
    cache = StepCache(model, batch)
    tokens, masks = hand_regions(model, batch)
    assert torch.allclose(cache.image_tokens, tokens, atol=1e-6)
    assert torch.equal(cache.image_mask, masks)
    feat = F.normalize(model.vision_proj(tokens[:, 0]), dim=-1)
    assert torch.allclose(cache.image_feat, feat, atol=1e-6)


def test_region_contrastive_loss_uses_the_region_features():
    """ITC on a region batch equals the plain InfoNCE on hand-pooled region features and hand text features."""
    model = micro_xvlm().eval()
    batch = random_batch(model, 2, texts_per_image=3, seed=6)
    tokens, _ = hand_regions(model, batch)
    img = F.normalize(model.vision_proj(tokens[:, 0]), dim=-1)
    txt = F.normalize(model.text_proj(model.encode_text(batch.text_ids, batch.text_mask)[:, 0]), dim=-1)
    logits = img @ txt.t() / model.temp
    target = torch.arange(6)
    want = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    cache = StepCache(model, batch)
    got = contrastive_loss(cache.image_feat, cache.text_feat, model.temp, batch.idx)  # idx unique: diagonal
    assert torch.allclose(got, want, atol=1e-5)
