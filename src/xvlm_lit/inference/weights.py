"""Read a checkpoint once and import it with the project's importer for the model's type and the file's layout.

- :class:`~xvlm_lit.models.vqa.XVLMForVQA`: the VQA key map (pre-trained source, ours after VQA, the reference's
  fine-tuned VQA file);
- :class:`~xvlm_lit.models.xvlm.XVLM` from a reference captioning file (``text_decoder.*``): the caption key map;
- any other :class:`XVLM` source (ours: Lightning, safetensors; the reference's pre-trained or fine-tuned
  retrieval/grounding ``.th``): the generic key map of :func:`~xvlm_lit.checkpoints.init_from`.
"""

from __future__ import annotations

import os

from torch import nn

from xvlm_lit.checkpoints.caption_keymap import caption_keymap, is_caption_layout
from xvlm_lit.checkpoints.importer import ImportReport, import_state_dict
from xvlm_lit.checkpoints.sources import Source, keymap_for, read_source
from xvlm_lit.checkpoints.vqa_keymap import vqa_keymap
from xvlm_lit.inference.errors import InferenceError
from xvlm_lit.models.vqa import XVLMForVQA
from xvlm_lit.models.xvlm import XVLM


def read(path: str | os.PathLike) -> Source:
    """The checkpoint's tensors and layout (no arbitrary unpickling; see :mod:`xvlm_lit.checkpoints.io`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    return read_source(path)


def holds_answer_decoder(source: Source) -> bool:
    """True for ours after VQA (``answer_decoder.*``) or the reference's fine-tuned VQA file (encoder +
    ``text_decoder.*``)."""
    keys = source.state_dict.keys()
    if any(k.startswith("answer_decoder.") for k in keys):
        return True
    return any(k.startswith("text_decoder.") for k in keys) and any(k.startswith("text_encoder.") for k in keys)


def import_weights(model: nn.Module, source: Source) -> ImportReport:
    """Strictly import ``source`` into ``model`` (module docstring); a mismatch raises
    :class:`~xvlm_lit.checkpoints.CheckpointMismatchError` listing the keys."""
    if isinstance(model, XVLMForVQA):
        keymap = vqa_keymap(model, source)
    elif isinstance(model, XVLM):
        keymap = caption_keymap(model, source) if is_caption_layout(source.state_dict) else keymap_for(model, source)
    else:
        raise InferenceError(f"{type(model).__name__} checkpoints are not supported by the inference API (it serves "
                             "X-VLM and its VQA model; NLVR2 is evaluated with python -m xvlm_lit.eval)")
    return import_state_dict(model, source.state_dict, keymap, source_name=source.path)
