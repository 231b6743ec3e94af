"""Geometry changes between checkpoints and models, through timm's maintained functions.

- Swin relative-position-bias tables ``[(2w-1)^2, heads]`` resized to the model's window (7 -> 12 at 384 px, 15 at
  480 px) with :func:`timm.layers.resize_rel_pos_bias_table` (the geometric-progression grid of the reference,
  interpolated in torch instead of SciPy's removed ``interp2d``);
- ViT absolute position embeddings resampled bicubically to the model's patch grid, prefix (CLS) tokens kept,
  with :func:`timm.layers.resample_abs_pos_embed` (so is Swin's optional absolute position embedding);
- the Swin buffers of the reference layout (``relative_position_index``, shifted-window ``attn_mask``) computed for
  a model's own window and resolution, for export.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from timm.layers import resample_abs_pos_embed, resize_rel_pos_bias_table
from timm.models.swin_transformer import SwinTransformerBlock, WindowAttention, get_relative_position_index
from torch import nn

TABLE = "relative_position_bias_table"


def resize_rel_pos_table(table: torch.Tensor, window_size: int | Sequence[int],
                         old_window_size: int | Sequence[int] | None = None) -> torch.Tensor:
    """``[(2w0-1)^2, heads]`` -> ``[(2w-1)^2, heads]`` (the same tensor when the window is unchanged)."""
    wh, ww = (window_size, window_size) if isinstance(window_size, int) else tuple(window_size)
    old = (old_window_size,) * 2 if isinstance(old_window_size, int) else old_window_size
    new_shape = ((2 * wh - 1) * (2 * ww - 1), table.shape[-1])
    with warnings.catch_warnings():  # timm's grid interpolator trips two harmless torch performance/style warnings
        warnings.filterwarnings("ignore", message=r"torch\.searchsorted\(\): input value tensor is non-contiguous")
        warnings.filterwarnings("ignore", message=r"Using a non-tuple sequence for multidimensional indexing")
        return resize_rel_pos_bias_table(table, new_window_size=(wh, ww), new_bias_shape=new_shape,
                                         old_window_size=tuple(old) if old is not None else None)


def resize_pos_embed(pos_embed: torch.Tensor, grid_size: Sequence[int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """``[1, P + h0*w0, D]`` -> ``[1, P + h*w, D]``: bicubic over the patch grid, the ``P`` prefix tokens kept."""
    return resample_abs_pos_embed(pos_embed, new_size=list(grid_size), num_prefix_tokens=num_prefix_tokens)


# ------------------------------------------------------------------------------------------- import-time adapters
#: ``adapter(root, our_key, value) -> tensor`` or None when it does not apply; tried in order on a shape mismatch
Adapter = Callable[[nn.Module, str, torch.Tensor], torch.Tensor | None]


def _parent(root: nn.Module, key: str) -> nn.Module | None:
    path = key.rpartition(".")[0]
    try:
        return root.get_submodule(path) if path else root
    except AttributeError:
        return None


def adapt_swin_table(root: nn.Module, key: str, value: torch.Tensor) -> torch.Tensor | None:
    if not key.endswith(TABLE):
        return None
    attn = _parent(root, key)
    if attn is None or not hasattr(attn, "window_size"):
        return None
    return resize_rel_pos_table(value, attn.window_size)


def adapt_vit_pos_embed(root: nn.Module, key: str, value: torch.Tensor) -> torch.Tensor | None:
    if key.rpartition(".")[2] != "pos_embed" or value.dim() != 3:
        return None
    vit = _parent(root, key)
    if vit is None or not hasattr(vit, "patch_embed"):
        return None
    prefix = 0 if getattr(vit, "no_embed_class", False) else int(getattr(vit, "num_prefix_tokens", 1))
    return resize_pos_embed(value, vit.patch_embed.grid_size, prefix)


def adapt_swin_ape(root: nn.Module, key: str, value: torch.Tensor) -> torch.Tensor | None:
    """Swin's absolute position embedding ``[1, h*w, C]`` (beside the backbone) -> the model's patch grid."""
    if key.rpartition(".")[2] != "absolute_pos_embed" or value.dim() != 3:
        return None
    owner = _parent(root, key)
    patch_embed = getattr(getattr(owner, "backbone", None), "patch_embed", None)
    if patch_embed is None:
        return None
    return resize_pos_embed(value, patch_embed.grid_size, num_prefix_tokens=0)


DEFAULT_ADAPTERS: tuple[Adapter, ...] = (adapt_swin_table, adapt_vit_pos_embed, adapt_swin_ape)


# ---------------------------------------------------------------------------------------------- export-time buffers
def swin_reference_buffers(backbone: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """The buffers the original Swin stores in its state dict, for ``backbone``'s windows and resolutions.

    Keys (timm module names under ``prefix``): ``...attn.relative_position_index`` (``[w^2, w^2]`` int64) for every
    block, ``...attn_mask`` (``[nW, w^2, w^2]`` float32, 0 / -100) for shifted-window blocks only, as in the
    original code (a stage no larger than one window has no shift and no mask).
    """
    out: dict[str, torch.Tensor] = {}
    for name, module in backbone.named_modules():
        if isinstance(module, WindowAttention):
            out[f"{prefix}{name}.relative_position_index"] = get_relative_position_index(*module.window_size)
        elif isinstance(module, SwinTransformerBlock):
            mask = module.get_attn_mask(device=torch.device("cpu"), dtype=torch.float32)
            if mask is not None:
                out[f"{prefix}{name}.attn_mask"] = mask
    return out
