"""Swin relative-position tables and ViT position embeddings follow the model's window / grid (timm functions)."""

import pytest
import torch
from timm.models.swin_transformer import get_relative_position_index

from xvlm_lit.checkpoints.resize import resize_pos_embed, resize_rel_pos_table, swin_reference_buffers
from xvlm_lit.models.vision import VisionEncoder


def test_window_7_to_7_is_the_identity():
    table = torch.randn(169, 4)
    out = resize_rel_pos_table(table, 7)
    assert out.shape == (169, 4) and torch.equal(out, table)


@pytest.mark.parametrize(("window", "rows"), [(12, 529), (15, 841)])
def test_constant_table_per_head_stays_constant(window, rows):
    per_head = torch.tensor([0.5, -1.25, 3.0, 0.0])
    table = per_head.expand(169, 4).clone()
    out = resize_rel_pos_table(table, window)
    assert out.shape == (rows, 4)
    assert torch.allclose(out, per_head.expand(rows, 4), atol=1e-6)


def test_resized_table_keeps_centre_and_is_smooth():
    # a table linear in the relative offset stays (nearly) linear on the finer grid; the zero offset is kept
    dy, dx = torch.meshgrid(torch.arange(-6, 7.0), torch.arange(-6, 7.0), indexing="ij")
    table = torch.stack([dy.flatten(), dx.flatten()], 1)  # [169, 2]
    out = resize_rel_pos_table(table, 12).view(23, 23, 2)
    assert torch.allclose(out[11, 11], torch.zeros(2), atol=1e-5)
    assert (out[1:, :, 0] >= out[:-1, :, 0] - 1e-5).all() and (out[:, 1:, 1] >= out[:, :-1, 1] - 1e-5).all()
    assert torch.allclose(out[0, 0], torch.tensor([-6.0, -6.0]), atol=1e-4)  # the extremes map to the extremes


def test_vit_pos_embed_resized_bicubically_cls_kept():
    pos = torch.randn(1, 1 + 4 * 4, 8)
    out = resize_pos_embed(pos, (6, 6), num_prefix_tokens=1)
    assert out.shape == (1, 37, 8)
    assert torch.equal(out[:, 0], pos[:, 0])
    expect = torch.nn.functional.interpolate(pos[:, 1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2), size=(6, 6),
                                             mode="bicubic", align_corners=False, antialias=True)
    assert torch.allclose(out[:, 1:], expect.permute(0, 2, 3, 1).reshape(1, 36, 8), atol=1e-6)
    assert torch.equal(resize_pos_embed(pos, (4, 4)), pos)


def original_swin_mask(res: int, window: int) -> torch.Tensor:
    """The shifted-window mask exactly as the original Swin code builds it (no timm)."""
    shift = window // 2
    img = torch.zeros(1, res, res, 1)
    cnt = 0
    for h in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for w in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[:, h, w, :] = cnt
            cnt += 1
    win = img.view(1, res // window, window, res // window, window, 1).permute(0, 1, 3, 2, 4, 5)
    win = win.reshape(-1, window * window)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def original_swin_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


def test_reference_buffers_match_the_original_swin_code():
    enc = VisionEncoder("swin_tiny_patch4_window7_224", 96, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4),
                        window_size=6)  # resolutions 24, 12, 6: stage 2 is one window (no shift, no mask)
    buffers = swin_reference_buffers(enc.backbone)
    masks = {k for k in buffers if k.endswith("attn_mask")}
    assert masks == {"layers.0.blocks.1.attn_mask", "layers.1.blocks.1.attn_mask"}
    assert torch.equal(buffers["layers.0.blocks.1.attn_mask"], original_swin_mask(24, 6))
    assert torch.equal(buffers["layers.1.blocks.1.attn_mask"], original_swin_mask(12, 6))
    for s in range(3):
        for i in range(2):
            index = buffers[f"layers.{s}.blocks.{i}.attn.relative_position_index"]
            assert index.dtype == torch.int64 and torch.equal(index, original_swin_index(6))
    assert torch.equal(original_swin_index(7), get_relative_position_index(7, 7))
