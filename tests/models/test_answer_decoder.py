"""The VQA answer decoder: initialised from the fusion layers (cross-attention K/V new), causal, its per-answer NLL,
and the reference's 2x-lr set (only the new K/V)."""

import pytest
import torch

from xvlm_lit.checkpoints.vqa_keymap import import_vqa_state_dict
from xvlm_lit.models.answer_decoder import AnswerDecoder
from xvlm_lit.tasks.optim import param_groups
from xvlm_lit.testing import MICRO_BERT
from xvlm_lit.testing_vqa import micro_base, micro_vqa

NEW_KV = ("crossattention.self.key.", "crossattention.self.value.")


def initialised_pair(vision_embed: int = 24):
    base, vqa = micro_base(seed=0, vision_embed=vision_embed), micro_vqa(seed=3, vision_embed=vision_embed)
    before = {k: v.clone() for k, v in vqa.state_dict().items()}
    report = import_vqa_state_dict(vqa, base.state_dict())
    return base, vqa, before, report


def test_decoder_layer_i_is_a_copy_of_fusion_layer_i_with_new_cross_kv():
    base, vqa, before, report = initialised_pair()
    dec, fusion = vqa.answer_decoder, base.fusion_encoder
    assert len(dec.layer) == len(fusion.layer) == 2
    for i in range(2):
        theirs = fusion.layer[i].state_dict()
        for name, value in dec.layer[i].state_dict().items():
            key = f"answer_decoder.layer.{i}.{name}"
            if name.startswith(NEW_KV):
                assert torch.equal(value, before[key]), key  # kept at its initialisation
                assert not torch.equal(value, theirs[name]) if name.endswith("bias") else (
                    value.shape != theirs[name].shape)  # the fusion's read 48-d vision tokens
                assert key in report.initialised
            else:
                assert torch.equal(value, theirs[name]), key
                assert value.data_ptr() != theirs[name].data_ptr()  # a copy: the decoder owns it
    # the pre-trained layers differ from each other, so layer i really comes from fusion layer i
    assert not torch.equal(dec.layer[0].intermediate.dense.weight, dec.layer[1].intermediate.dense.weight)
    assert set(report.initialised) == {k for k in before if k.startswith("answer_decoder.") and
                                       any(s in k for s in NEW_KV)}


def test_embeddings_and_head_copied_and_tied_to_the_decoder_own_embeddings():
    base, vqa, _, _ = initialised_pair()
    dec = vqa.answer_decoder
    for name, value in dec.embeddings.state_dict().items():
        assert torch.equal(value, base.text_encoder.bert.embeddings.state_dict()[name]), name
    for name, value in dec.lm_head.state_dict().items():
        assert torch.equal(value, base.mlm_head.state_dict()[name]), name
    head = dec.lm_head.cls.predictions.decoder
    assert head.weight is dec.word_embeddings.weight
    assert dec.word_embeddings.weight is not vqa.text_encoder.word_embeddings.weight
    # the encoders come over unchanged
    for name, value in vqa.fusion_encoder.state_dict().items():
        assert torch.equal(value, base.fusion_encoder.state_dict()[name]), name


def test_same_width_copies_the_cross_kv_too_and_nothing_is_new():
    base, vqa, _, report = initialised_pair(vision_embed=16)  # 32-d vision tokens = the text width
    assert not vqa.new_cross_kv and not report.initialised
    assert torch.equal(vqa.answer_decoder.layer[1].crossattention.self.key.weight,
                       base.fusion_encoder.layer[1].crossattention.self.key.weight)
    assert not [n for n, _ in vqa.named_parameters() if vqa.is_new_parameter(n)]


def test_only_the_new_cross_kv_train_at_the_higher_lr():
    vqa = micro_vqa()
    groups = param_groups(vqa.named_parameters(), vqa.is_new_parameter, lr=1e-4, weight_decay=0.01)
    fast = sorted(n for g in groups if g["lr"] == 2e-4 for n in g["names"])
    assert fast == sorted(f"answer_decoder.layer.{i}.crossattention.self.{p}.{w}"
                          for i in range(2) for p in ("key", "value") for w in ("weight", "bias"))
    # the question encoder's cross-attention trains at the base lr, as in the reference's VQA
    assert not any(n.startswith("fusion_encoder.") for n in fast)


def decoder_and_states(seed=0):
    torch.manual_seed(seed)
    dec = AnswerDecoder(MICRO_BERT, 2).eval()
    states = torch.randn(3, 5, MICRO_BERT.hidden_size)
    states_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    ids = torch.randint(5, MICRO_BERT.vocab_size, (3, 6))
    ids[:, 0] = 1
    return dec, states, states_mask, ids


def test_self_attention_is_causal():
    dec, states, smask, ids = decoder_and_states()
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref = dec(ids, mask, states, smask)
        changed = ids.clone()
        changed[:, 3] = 7
        out = dec(changed, mask, states, smask)
    assert torch.allclose(out[:, :3], ref[:, :3], atol=1e-6)  # earlier positions cannot see position 3
    assert not torch.allclose(out[:, 3:], ref[:, 3:], atol=1e-4)
    # padding after an answer changes nothing before it
    padded = ids.clone()
    padded[:, 4:] = 0
    pmask = mask.clone()
    pmask[:, 4:] = 0
    with torch.no_grad():
        short = dec(ids[:, :4], mask[:, :4], states, smask)
        long = dec(padded, pmask, states, smask)
    assert torch.allclose(long[:, :4], short, atol=1e-6)


def test_question_mask_hides_padded_question_tokens():
    dec, states, smask, ids = decoder_and_states()
    noisy = states.clone()
    noisy[1, 3:] = 100.0  # masked out in row 1
    with torch.no_grad():
        a = dec(ids, torch.ones_like(ids), states, smask)
        b = dec(ids, torch.ones_like(ids), noisy, smask)
    assert torch.allclose(a[1], b[1], atol=1e-6)


def test_sequence_nll_is_the_summed_next_token_nll_of_the_real_tokens():
    dec, states, smask, ids = decoder_and_states()
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    ids = ids * mask
    with torch.no_grad():
        nll = dec.sequence_nll(ids, mask, states, smask)
        logp = dec.logits(ids, mask, states, smask).log_softmax(-1)
    for a in range(3):
        n = int(mask[a].sum())
        want = -sum(logp[a, t - 1, ids[a, t]] for t in range(1, n))
        assert nll[a] == pytest.approx(float(want), rel=1e-5)
