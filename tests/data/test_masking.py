"""MLM masking of SPEC section 4: counts, whole words, spans, 80/10/10, [CLS]/padding, determinism."""

import random

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from xvlm_lit.data.masking import MLMMasker, tokenize_captions
from xvlm_lit.data.tokenizer import load_tokenizer

CLS, PAD, MASK = 101, 0, 103
WORDS = (
    "the a man woman dog cat red blue green car tree sky on of in with near small large white black street "
    "table chair field grass water boat house window door road sign person child girl boy two three bus "
    "train plane"
).split()


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return load_tokenizer()


@pytest.fixture(scope="module")
def word_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids(WORDS)
    assert len(set(ids)) == len(WORDS) and tokenizer.unk_token_id not in ids and MASK not in ids
    return ids


def single_piece_text(word_ids: list[int], length: int) -> list[int]:
    """[CLS] + (length - 1) one-piece words."""
    return [CLS] + [word_ids[i % len(word_ids)] for i in range(length - 1)]


def two_piece_text(tokenizer: PreTrainedTokenizerFast, n_words: int) -> list[int]:
    """[CLS] + n_words copies of the two-piece word "dog ##s"."""
    dog, s = tokenizer.convert_tokens_to_ids(["dog", "##s"])
    return [CLS] + [dog, s] * n_words


def mixed_texts(tokenizer: PreTrainedTokenizerFast) -> list[list[int]]:
    caps = [
        "a frisbee player unaffably catching the disc",
        "two snowboarders jumping over a snowbank at sunset",
        "an unrecognizable skateboarder",
        "kitesurfing",
        "a man",
        "the photographer photographs photogenic hummingbirds hovering near bougainvillea flowers in guatemala",
    ]
    ids, att = tokenize_captions(tokenizer, caps, max_tokens=40)
    return [row[: int(n)].tolist() for row, n in zip(ids, att.sum(1), strict=True)]


def word_spans(masker: MLMMasker, ids: list[int]) -> list[range]:
    """Whole words (start at a non-## piece, run over following ## pieces) of positions 1..L-1."""
    spans, start = [], 1
    for i in range(2, len(ids) + 1):
        if i == len(ids) or not masker.is_subword[ids[i]]:
            spans.append(range(start, i))
            start = i
    return spans


def real(pos: torch.Tensor, labels: torch.Tensor) -> list[int]:
    return pos[labels != -100].tolist()


def test_subword_lookup(tokenizer: PreTrainedTokenizerFast) -> None:
    masker = MLMMasker(tokenizer)
    vocab = tokenizer.get_vocab()
    assert masker.vocab_size == len(masker.is_subword) == 30522
    assert sum(masker.is_subword) == sum(tok.startswith("##") for tok in vocab)
    assert masker.is_subword[vocab["##s"]] and not masker.is_subword[vocab["dog"]]
    assert masker.mask_token_id == MASK


@pytest.mark.parametrize(
    ("max_masks", "table"),
    [
        # python round() is half-to-even, as in the reference: 2.5 -> 2, 3.5 -> 4, 4.5 -> 4
        (8, {2: 1, 3: 1, 5: 1, 6: 2, 7: 2, 10: 2, 14: 4, 18: 4, 22: 6, 30: 8, 33: 8, 40: 8}),
        (6, {2: 1, 6: 2, 14: 4, 22: 6, 26: 6, 30: 6, 40: 6}),
    ],
)
def test_number_of_masks_is_exact(
    tokenizer: PreTrainedTokenizerFast, word_ids: list[int], max_masks: int, table: dict[int, int]
) -> None:
    masker = MLMMasker(tokenizer, max_masks=max_masks)  # spans on: overflow is cut back to exactly n
    dog, s = tokenizer.convert_tokens_to_ids(["dog", "##s"])
    for length, expected in table.items():
        assert masker.num_to_mask(length) == expected
        texts = [single_piece_text(word_ids, length), ([CLS] + [dog, s] * length)[:length]]
        for ids in texts:
            for seed in range(20):
                _, pos, lab = masker(ids, torch.Generator().manual_seed(seed))
                assert pos.shape == lab.shape == (max_masks,)
                assert len(real(pos, lab)) == expected


def test_cls_and_padding_never_masked(tokenizer: PreTrainedTokenizerFast) -> None:
    masker = MLMMasker(tokenizer)
    texts = mixed_texts(tokenizer)
    ids, att = torch.zeros(len(texts), 40, dtype=torch.long), torch.zeros(len(texts), 40, dtype=torch.long)
    for i, row in enumerate(texts):
        ids[i, : len(row)] = torch.tensor(row)
        att[i, : len(row)] = 1
    gen = torch.Generator().manual_seed(0)
    for _ in range(350):  # 2100 masked texts
        out = masker.mask_padded(ids, att, gen)
        assert (out["masked_ids"][:, 0] == CLS).all()
        assert (out["masked_ids"][att == 0] == PAD).all()
        valid = out["masked_labels"] != -100
        assert (out["masked_pos"][valid] >= 1).all()
        assert (out["masked_pos"][valid] < att.sum(1, keepdim=True).expand_as(valid)[valid]).all()


def test_labels_positions_and_padding(tokenizer: PreTrainedTokenizerFast) -> None:
    masker = MLMMasker(tokenizer, max_masks=8)
    gen = torch.Generator().manual_seed(1)
    for ids in mixed_texts(tokenizer) * 30:
        m_ids, pos, lab = masker(ids, gen)
        assert m_ids.shape == (len(ids),)
        k = int((lab != -100).sum())
        assert (lab[:k] != -100).all() and (lab[k:] == -100).all() and (pos[k:] == 0).all()
        chosen = pos[:k].tolist()
        assert chosen == sorted(set(chosen))
        assert lab[:k].tolist() == [ids[p] for p in chosen]
        untouched = [i for i in range(len(ids)) if i not in chosen]
        assert m_ids[untouched].tolist() == [ids[i] for i in untouched]


def test_cls_only_text_masks_nothing(tokenizer: PreTrainedTokenizerFast) -> None:
    m_ids, pos, lab = MLMMasker(tokenizer)([CLS], torch.Generator().manual_seed(0))
    assert m_ids.tolist() == [CLS] and pos.tolist() == [0] * 8 and lab.tolist() == [-100] * 8


@pytest.mark.parametrize("n_words", [4, 7, 12, 15])  # n = 2, 4, 6, 8: even, so whole words never overshoot n
def test_whole_words_masked_when_n_not_binding(tokenizer: PreTrainedTokenizerFast, n_words: int) -> None:
    masker = MLMMasker(tokenizer, span_prob=0.0)
    ids = two_piece_text(tokenizer, n_words)
    gen = torch.Generator().manual_seed(n_words)
    for _ in range(300):
        _, pos, lab = masker(ids, gen)
        chosen = set(real(pos, lab))
        assert len(chosen) == masker.num_to_mask(len(ids)) == {4: 2, 7: 4, 12: 6, 15: 8}[n_words]
        for p in chosen:  # a "##s" at p implies its word start p-1 is masked, and vice versa
            partner = p - 1 if p % 2 == 0 else p + 1
            assert partner in chosen


def test_walk_selects_whole_words_with_spans(tokenizer: PreTrainedTokenizerFast) -> None:
    masker = MLMMasker(tokenizer, span_prob=0.5)
    rng = random.Random(0)
    for ids in mixed_texts(tokenizer):
        words = word_spans(masker, ids)
        assert any(len(w) > 1 for w in words) or len(ids) < 4
        for _ in range(200):
            chosen, n = masker.walk_positions(ids, rng)
            assert len(chosen) >= n
            for w in words:
                inside = [p in chosen for p in w]
                assert all(inside) or not any(inside), (ids, w, chosen)


def test_span_statistics(tokenizer: PreTrainedTokenizerFast, word_ids: list[int]) -> None:
    """With n = 1 the walk takes exactly one candidate: a single word w.p. 0.8, else a 2- or 3-token span."""
    length = 40
    masker = MLMMasker(tokenizer, mask_prob=0.01, span_prob=0.2)
    ids = single_piece_text(word_ids, length)
    gen = torch.Generator().manual_seed(123)
    sizes = []
    for _ in range(4000):
        chosen, n = masker.walk_positions(ids, gen)
        assert n == 1
        assert chosen == list(range(chosen[0], chosen[0] + len(chosen)))  # one contiguous run
        if chosen[0] <= length - 3:  # spans starting here are never cut by the end of the text
            sizes.append(len(chosen))
    spans = [s for s in sizes if s > 1]
    assert set(sizes) == {1, 2, 3}
    assert abs(len(spans) / len(sizes) - 0.2) < 0.03
    assert abs(spans.count(2) / len(spans) - 0.5) < 0.08
    # span_prob = 0: never more than one word
    plain = MLMMasker(tokenizer, mask_prob=0.01, span_prob=0.0)
    assert all(len(plain.walk_positions(ids, gen)[0]) == 1 for _ in range(500))


@pytest.mark.parametrize("make_rng", [lambda: torch.Generator().manual_seed(7), lambda: random.Random(7)])
def test_replacement_split_80_10_10(tokenizer: PreTrainedTokenizerFast, word_ids: list[int], make_rng) -> None:
    masker = MLMMasker(tokenizer)
    ids = single_piece_text(word_ids, 40)  # n = 8 per draw
    rng = make_rng()
    batch = masker.mask_batch([ids] * 700, pad_to=40, generator=rng)  # 5600 masked positions
    orig = torch.tensor(ids).expand(700, -1)
    pos, lab = batch["masked_pos"], batch["masked_labels"]
    assert (lab != -100).all()
    new = batch["masked_ids"].gather(1, pos).flatten()
    old = orig.gather(1, pos).flatten()
    assert torch.equal(old, lab.flatten())
    is_mask = new == MASK
    is_same = new == old
    is_random = ~is_mask & ~is_same
    total = new.numel()
    assert abs(is_mask.sum().item() / total - 0.8) < 0.03
    assert abs(is_random.sum().item() / total - 0.1) < 0.02
    assert abs(is_same.sum().item() / total - 0.1) < 0.02
    rand_ids = new[is_random].double()
    assert abs(rand_ids.mean().item() - 30521 / 2) < 1500  # uniform over the whole vocabulary
    assert rand_ids.min() < 3000 and rand_ids.max() > 27000


@pytest.mark.parametrize("make_rng", [lambda s: torch.Generator().manual_seed(s), random.Random])
def test_deterministic_given_seed(tokenizer: PreTrainedTokenizerFast, make_rng) -> None:
    masker = MLMMasker(tokenizer)
    texts = mixed_texts(tokenizer) * 5
    a = masker.mask_batch(texts, 40, make_rng(11))
    b = masker.mask_batch(texts, 40, make_rng(11))
    c = masker.mask_batch(texts, 40, make_rng(12))
    for key in ("masked_ids", "masked_pos", "masked_labels"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["masked_pos"], c["masked_pos"])


def test_tensor_and_list_inputs_agree(tokenizer: PreTrainedTokenizerFast) -> None:
    masker = MLMMasker(tokenizer)
    ids = mixed_texts(tokenizer)[1]
    out_list = masker(ids, torch.Generator().manual_seed(5))
    out_tensor = masker(torch.tensor(ids), torch.Generator().manual_seed(5))
    for x, y in zip(out_list, out_tensor, strict=True):
        assert torch.equal(x, y)


def test_mask_batch_shapes_truncation_and_padded_variant(tokenizer: PreTrainedTokenizerFast) -> None:
    masker = MLMMasker(tokenizer, max_masks=6)
    texts = mixed_texts(tokenizer)
    out = masker.mask_batch(texts, pad_to=12, generator=torch.Generator().manual_seed(0))
    assert out["masked_ids"].shape == (len(texts), 12)
    assert out["masked_pos"].shape == out["masked_labels"].shape == (len(texts), 6)
    assert (out["masked_pos"] < 12).all()
    for i, row in enumerate(texts):
        n = min(len(row), 12)
        assert (out["masked_ids"][i, n:] == PAD).all()
        assert (out["masked_labels"][i] != -100).sum() == masker.num_to_mask(n)
    ids, att = tokenize_captions(tokenizer, ["a man riding a horse on the beach", "kitesurfing"], max_tokens=16)
    rows = [r[: int(n)].tolist() for r, n in zip(ids, att.sum(1), strict=True)]
    padded = masker.mask_padded(ids, att, torch.Generator().manual_seed(3))
    unpadded = masker.mask_batch(rows, 16, torch.Generator().manual_seed(3))
    for key in padded:
        assert torch.equal(padded[key], unpadded[key])
