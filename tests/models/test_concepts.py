"""Box -> patch mask with the SPEC formula, and region sequences."""

import torch

from xvlm_lit.models.concepts import boxes_to_patch_mask, region_tokens


def cells(mask: torch.Tensor, n: int) -> set[tuple[int, int]]:
    """(row, col) of the selected patches of one mask ``[1+n*n]``."""
    assert mask[0] == 1
    return {(i // n, i % n) for i in torch.nonzero(mask[1:]).flatten().tolist()}


def rect(r0, r1, c0, c1):
    return {(i, j) for i in range(r0, r1) for j in range(c0, c1)}


def test_hand_checked_boxes_on_224_grid7():
    boxes = torch.tensor([
        [0.0, 0.0, 224.0, 224.0],  # whole image
        [40.0, 70.0, 10.0, 5.0],  # smaller than a patch: floor(40/32)=1 .. ceil(50/32)=2; rows 2..3
        [32.0, 32.0, 32.0, 32.0],  # exactly one patch (1,1)
        [200.0, 100.0, 60.0, 30.0],  # x+w beyond the image: cols 6..7 clipped to n
        [224.0, 224.0, 5.0, 5.0],  # starts at the border: min(floor(7), 6) = 6, at least one patch
        [0.0, 0.0, 0.5, 0.5],  # tiny box in the corner
        [-10.0, 10.0, 20.0, 20.0],  # negative x clamps to column 0
    ])
    m = boxes_to_patch_mask(boxes, 224, 7)
    assert m.shape == (7, 50)
    assert cells(m[0], 7) == rect(0, 7, 0, 7)
    assert cells(m[1], 7) == rect(2, 3, 1, 2)
    assert cells(m[2], 7) == rect(1, 2, 1, 2)
    assert cells(m[3], 7) == rect(3, 5, 6, 7)
    assert cells(m[4], 7) == rect(6, 7, 6, 7)
    assert cells(m[5], 7) == rect(0, 1, 0, 1)
    assert cells(m[6], 7) == rect(0, 1, 0, 1)


def test_index_layout_is_row_major_after_cls():
    m = boxes_to_patch_mask(torch.tensor([[64.0, 32.0, 10.0, 10.0]]), 128, 4)  # P=32: col 2, row 1
    assert torch.nonzero(m[0]).flatten().tolist() == [0, 4 * 1 + 2 + 1]


def test_box_on_patch_boundary_is_exclusive():
    # x + w = 64 exactly: ceil(64/32) = 2, so columns 0..1 only
    m = boxes_to_patch_mask(torch.tensor([[0.0, 0.0, 64.0, 64.0]]), 128, 4)
    assert cells(m[0], 4) == rect(0, 2, 0, 2)


def test_region_cls_is_mean_of_in_box_patches_and_image_encoded_once():
    torch.manual_seed(0)
    embeds = torch.randn(2, 1 + 4, 3)  # two images, 2x2 grid
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.float)
    index = torch.tensor([0, 1, 1])
    tokens, att = region_tokens(embeds, index, mask)
    assert torch.allclose(tokens[0, 0], (embeds[0, 1] + embeds[0, 3]) / 2)
    assert torch.allclose(tokens[1, 0], embeds[1, 4])
    assert torch.allclose(tokens[2, 0], embeds[1, 1:].mean(0))
    assert torch.equal(tokens[:, 1:], embeds[index, 1:])
    assert torch.equal(att, mask)
    full, ones = region_tokens(embeds, None, None)
    assert full is embeds and torch.equal(ones, torch.ones(2, 5))
