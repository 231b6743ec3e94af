"""The NLVR2 model: pair layers share their cross-attention K/V (one tensor, one gradient) and start from the same
pre-trained layer; the even layer of a pair attends image 0, the odd one image 1."""

import copy

import torch
from torch import nn

from xvlm_lit.checkpoints.nlvr_keymap import init_nlvr
from xvlm_lit.models.nlvr import NLVRModel, PairedFusionEncoder
from xvlm_lit.models.text import TextEncoder
from xvlm_lit.models.vision import VisionEncoder
from xvlm_lit.testing import MICRO_BERT, micro_xvlm

PAIRS = 2


def micro_nlvr(seed: int = 0, text_assignment: bool = False) -> NLVRModel:
    """A 1 text + 2 x 2 fusion layer NLVR model on the micro Swin of :func:`micro_xvlm`, dropout off."""
    torch.manual_seed(seed)
    enc = VisionEncoder("swin_tiny_patch4_window7_224", 32, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
                        window_size=4)
    return NLVRModel(enc, TextEncoder(MICRO_BERT, 1), PairedFusionEncoder(MICRO_BERT, PAIRS, enc.width),
                     embed_dim=16, text_assignment=text_assignment)


def micro_pretrained(seed: int = 3):
    """The single-image micro X-VLM with as many fusion layers as the NLVR model has pairs."""
    model = micro_xvlm(seed=seed)
    torch.manual_seed(seed)
    extra = copy.deepcopy(model.fusion_encoder.layer[0])
    for p in extra.parameters():
        nn.init.normal_(p, std=0.05)
    model.fusion_encoder.layer.append(extra)
    return model


def pair_inputs(model, n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = model.image_size
    ids = torch.randint(5, 400, (n, 7), generator=g)
    ids[:, 0] = 1
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0
    return (torch.randn(n, 3, r, r, generator=g), torch.randn(n, 3, r, r, generator=g), ids * mask, mask)


def test_pair_layers_share_one_key_value_tensor_and_nothing_else():
    model = micro_nlvr()
    layers = model.fusion_encoder.layer
    assert len(layers) == 2 * PAIRS
    for k in range(PAIRS):
        even, odd = layers[2 * k].crossattention.self, layers[2 * k + 1].crossattention.self
        for name in ("key", "value"):
            assert getattr(even, name).weight is getattr(odd, name).weight
            assert getattr(even, name).bias is getattr(odd, name).bias
        assert even.query.weight is not odd.query.weight
        assert layers[2 * k].attention.self.key.weight is not layers[2 * k + 1].attention.self.key.weight
        assert layers[2 * k].intermediate.dense.weight is not layers[2 * k + 1].intermediate.dense.weight
    # no pair shares with another pair
    assert layers[0].crossattention.self.key.weight is not layers[2].crossattention.self.key.weight
    # the state dict names both uses (the reference saves both) but they are one tensor
    sd = model.state_dict(keep_vars=True)
    assert sd["fusion_encoder.layer.0.crossattention.self.key.weight"] is \
        sd["fusion_encoder.layer.1.crossattention.self.key.weight"]
    names = [n for n, _ in model.named_parameters()]
    assert "fusion_encoder.layer.1.crossattention.self.key.weight" not in names  # counted once by the optimizer


def test_shared_gradient_is_the_sum_of_both_uses():
    model = micro_nlvr(seed=1)
    untied = copy.deepcopy(model)
    for k in range(PAIRS):  # the same weights as separate tensors: each use gets its own gradient
        odd = untied.fusion_encoder.layer[2 * k + 1].crossattention.self
        odd.key, odd.value = copy.deepcopy(odd.key), copy.deepcopy(odd.value)
    assert untied.fusion_encoder.layer[1].crossattention.self.key.weight is not \
        untied.fusion_encoder.layer[0].crossattention.self.key.weight
    inputs = pair_inputs(model)
    labels = torch.tensor([0, 1, 1])
    for m in (model, untied):
        nn.functional.cross_entropy(m.pair_logits(*inputs), labels).backward()
    for k in range(PAIRS):
        for name in ("key", "value"):
            shared = getattr(model.fusion_encoder.layer[2 * k].crossattention.self, name).weight.grad
            even = getattr(untied.fusion_encoder.layer[2 * k].crossattention.self, name).weight.grad
            odd = getattr(untied.fusion_encoder.layer[2 * k + 1].crossattention.self, name).weight.grad
            assert even.abs().sum() > 0 and odd.abs().sum() > 0  # both uses contribute
            torch.testing.assert_close(shared, even + odd, rtol=1e-5, atol=1e-7)


def test_even_layers_attend_image0_odd_layers_image1():
    model = micro_nlvr().eval()
    seen = {}
    for i, layer in enumerate(model.fusion_encoder.layer):
        layer.crossattention.register_forward_hook(
            lambda mod, args, kwargs, out, i=i: seen.__setitem__(i, kwargs.get("context", args[1] if len(args) > 1
                                                                              else None)), with_kwargs=True)
    images0, images1, ids, mask = pair_inputs(model)
    model.pair_logits(images0, images1, ids, mask)
    tokens0, tokens1 = model.encode_image(images0), model.encode_image(images1)
    for i in range(2 * PAIRS):
        torch.testing.assert_close(seen[i], tokens0 if i % 2 == 0 else tokens1)


def test_both_layers_of_a_pair_start_from_the_same_pretrained_layer():
    source = micro_pretrained()
    model = micro_nlvr(seed=7)
    report = init_nlvr_from_model(model, source)
    theirs = source.state_dict()
    ours = model.state_dict()
    for j in range(2 * PAIRS):
        prefix = f"fusion_encoder.layer.{j}."
        for key in (k for k in ours if k.startswith(prefix)):
            src = key.replace(prefix, f"fusion_encoder.layer.{j // 2}.")
            assert torch.equal(ours[key], theirs[src]), key
    assert all(k.startswith("cls_head.") for k in report.initialised)


def init_nlvr_from_model(model, source, tmp=None):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.ckpt"
        torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)
        return init_nlvr(model, path)
