"""The key map for any model the project builds, so one importer serves ``model.init_from``, ``xvlm_lit.eval``
and :func:`xvlm_lit.load`.

The task models read checkpoints through their own maps: :class:`~xvlm_lit.models.vqa.XVLMForVQA` (answer
decoder <- fusion layers, or a fine-tuned VQA file), :class:`~xvlm_lit.models.nlvr.NLVRModel` (pre-trained
fusion layer k -> pair layers 2k, 2k+1, or an NLVR file) and the captioning X-VLM (a reference ``text_decoder.``
file); every other model, and the X-VLM reading a pre-trained file, uses the generic map of the file's layout.
"""

from __future__ import annotations

from torch import nn

from xvlm_lit.checkpoints.keymap import KeyMap
from xvlm_lit.checkpoints.sources import Source, keymap_for


def auto_keymap(model: nn.Module, source: Source) -> KeyMap:
    """The map reading ``source`` into ``model``, chosen from the model's class and the file's layout."""
    from xvlm_lit.checkpoints.caption_keymap import is_caption_layout, reference_caption_keymap
    from xvlm_lit.checkpoints.nlvr_keymap import nlvr_keymap
    from xvlm_lit.checkpoints.vqa_keymap import vqa_keymap
    from xvlm_lit.models.nlvr import NLVRModel
    from xvlm_lit.models.vqa import XVLMForVQA
    from xvlm_lit.models.xvlm import XVLM

    if isinstance(model, XVLMForVQA):
        return vqa_keymap(model, source)
    if isinstance(model, NLVRModel):
        return nlvr_keymap(model, source)
    if isinstance(model, XVLM) and is_caption_layout(source.state_dict):
        return reference_caption_keymap(model)
    return keymap_for(model, source)
