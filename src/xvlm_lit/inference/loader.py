"""``xvlm_lit.load(path)``: any checkpoint the project imports -> a :class:`~xvlm_lit.inference.predictor.Predictor`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import torch
from omegaconf import DictConfig

from xvlm_lit.build import build_model
from xvlm_lit.inference.config import CheckpointConfig, resolve_config
from xvlm_lit.inference.heads import detect_heads
from xvlm_lit.inference.predictor import Predictor
from xvlm_lit.inference.preprocess import Preprocessor
from xvlm_lit.inference.weights import holds_answer_decoder, import_weights, read

log = logging.getLogger(__name__)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _preprocessor(cfg: CheckpointConfig, image_size: int) -> Preprocessor:
    data = cfg.data
    size = data.get("image_size")
    return Preprocessor(int(size) if isinstance(size, int) else image_size, int(data.get("max_tokens", 40)),
                        int(data.get("max_words", 30)), data.get("tokenizer_path"))


def load(path: str | os.PathLike, device: str | torch.device | None = None,
         model: str | Mapping | DictConfig | None = None, overrides: Sequence[str] = (), batch_size: int = 32,
         rerank: int = 16) -> Predictor:
    """Load a checkpoint for inference.

    Args:
        path: a Lightning ``.ckpt`` of a run of this project (its model, data and task settings come from
            ``<run>/.hydra/config.yaml``), our safetensors export, or a reference X-VLM ``.th``/``.pth``
            (pre-trained, or fine-tuned for retrieval, grounding, captioning or VQA).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...; default: CUDA when available.
        model: the architecture when the file has no run config beside it: a ``conf/model`` name
            (``xvlm_base``, ``xvlm_tiny``, ``vqa_base``), a yaml path, or a config node; default ``xvlm_base``
            (``vqa_base`` for a file with an answer decoder). Given explicitly, it overrides the run config.
        overrides: ``key=value`` changes of the model node, e.g. ``["vision.image_size=384",
            "vision.window_size=12"]`` for a reference checkpoint fine-tuned at 384 px.
        batch_size: images / texts encoded at once; rerank: ITM re-ranked candidates in ``retrieve``.

    Raises:
        FileNotFoundError: no such file. :class:`~xvlm_lit.checkpoints.CheckpointMismatchError`: the file does
        not fit the architecture (pass ``model=``). :class:`~xvlm_lit.inference.errors.InferenceError`: an
        unsupported checkpoint or config.
    """
    source = read(path)
    cfg = resolve_config(path, model, overrides, vqa=holds_answer_decoder(source))
    net = build_model(cfg.model, load_weights=False)  # the weights come from the checkpoint
    report = import_weights(net, source)
    heads = detect_heads(net, source, report, cfg)
    log.info("loaded %s (config: %s; heads: %s)", path, cfg.source, heads)
    return Predictor(net, _preprocessor(cfg, net.image_size), heads, cfg, _device(device), batch_size, rerank)
