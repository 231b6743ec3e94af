"""Read a checkpoint once and import it with the key map the project's importer picks for the model's type and
the file's layout (:func:`xvlm_lit.checkpoints.auto.auto_keymap`: VQA, a reference captioning file, or the
generic maps). NLVR2 models are not served by the inference API.
"""

from __future__ import annotations

import os

from torch import nn

from xvlm_lit.checkpoints.auto import auto_keymap
from xvlm_lit.checkpoints.importer import ImportReport, import_state_dict
from xvlm_lit.checkpoints.sources import Source, read_source
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
    if not isinstance(model, XVLM | XVLMForVQA):
        raise InferenceError(f"{type(model).__name__} checkpoints are not supported by the inference API (it serves "
                             "X-VLM and its VQA model; NLVR2 is evaluated with python -m xvlm_lit.eval)")
    return import_state_dict(model, source.state_dict, auto_keymap(model, source), source_name=source.path)
