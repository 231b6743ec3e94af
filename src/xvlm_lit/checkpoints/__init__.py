"""Checkpoint import/export: reference X-VLM files, ImageNet backbones, BERT directories, our own exports.

- :func:`init_from` (``model.init_from=<path>``) and :func:`load_reference_checkpoint`: strict imports with a report;
- :func:`save_reference` / :func:`save_safetensors`: exports; ``python -m xvlm_lit.checkpoints export|inspect``;
- :mod:`~xvlm_lit.checkpoints.keymap`: the name rules, extended per task with :meth:`KeyMap.with_rules`;
- :mod:`~xvlm_lit.checkpoints.resize`: Swin window / ViT grid changes through timm;
- :mod:`~xvlm_lit.checkpoints.io`: loading never unpickles arbitrary objects.
"""

from xvlm_lit.checkpoints.exporter import reference_state_dict, save_reference, save_safetensors
from xvlm_lit.checkpoints.importer import (
    CheckpointMismatchError,
    ImportReport,
    import_state_dict,
    init_from,
    load_reference_checkpoint,
)
from xvlm_lit.checkpoints.io import UnsafeCheckpointError, read_checkpoint
from xvlm_lit.checkpoints.keymap import KeepInit, KeyMap, Rename, Unused, reference_keymap
from xvlm_lit.checkpoints.pretrained import load_bert_dir, load_vision_checkpoint

__all__ = [
    "CheckpointMismatchError", "ImportReport", "KeepInit", "KeyMap", "Rename", "UnsafeCheckpointError", "Unused",
    "import_state_dict", "init_from", "load_bert_dir", "load_reference_checkpoint", "load_vision_checkpoint",
    "read_checkpoint", "reference_keymap", "reference_state_dict", "save_reference", "save_safetensors",
]
