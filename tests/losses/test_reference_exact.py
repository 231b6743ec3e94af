"""Reference-exact mode (``id_positives: false``): plain diagonal targets even when texts share an id."""

from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from xvlm_lit.losses.base import StepCache
from xvlm_lit.losses.itc import ITCLoss
from xvlm_lit.losses.itm import ITMLoss
from xvlm_lit.testing import micro_xvlm, random_batch


def duplicate_id_batch(model):
    """3 images x 2 region texts; the two texts of an image share one id (as duplicate image ids do)."""
    batch = random_batch(model, 3, texts_per_image=2, seed=8)
    batch.idx = batch.image_index.clone()
    return batch


def test_itc_without_id_positives_is_the_plain_diagonal_infonce():
    model = micro_xvlm().eval()
    batch = duplicate_id_batch(model)
    cache = StepCache(model, batch)
    img = F.normalize(model.vision_proj(cache.image_tokens[:, 0]), dim=-1)
    txt = F.normalize(model.text_proj(model.encode_text(batch.text_ids, batch.text_mask)[:, 0]), dim=-1)
    logits = img @ txt.t() / model.temp
    diag = torch.arange(6)
    plain = (F.cross_entropy(logits, diag) + F.cross_entropy(logits.t(), diag)) / 2
    got = ITCLoss(id_positives=False)(model, batch, cache)["itc_loss"]
    assert torch.allclose(got, plain, atol=1e-5)
    default = ITCLoss()(model, batch, cache)["itc_loss"]
    same_id = (batch.idx[:, None] == batch.idx[None]).float()
    soft = same_id / same_id.sum(1, keepdim=True)  # duplicate-aware targets, written out
    dup = (-(F.log_softmax(logits, 1) * soft).sum(1).mean() - (F.log_softmax(logits.t(), 1) * soft).sum(1).mean()) / 2
    assert torch.allclose(default, dup, atol=1e-5)
    assert not torch.allclose(default, plain, atol=1e-3)


def test_itm_without_id_positives_may_draw_a_same_id_negative(monkeypatch):
    """Each text's most similar other image is its id-partner's (texts 2k, 2k+1 share id k): reference-exact
    mode draws exactly that partner at a tiny temperature; the default mode never does."""
    model = micro_xvlm().eval()
    batch = duplicate_id_batch(model)
    with torch.no_grad():
        model.temp.fill_(1e-3)
    partner = torch.tensor([1, 0, 3, 2, 5, 4])
    s = torch.zeros(6, 6)
    s[torch.arange(6), partner] = 1.0  # s[i, t]: image-row i most similar to text partner[i]
    seen = []
    fuse = model.fuse
    monkeypatch.setattr(model, "fuse", lambda h, m, v, a: seen.append(v) or fuse(h, m, v, a))
    for plugin in (ITMLoss(id_positives=False), ITMLoss()):
        cache = StepCache(model, batch)
        cache._store["image_feat"], cache._store["text_feat"] = torch.eye(6), s.t().contiguous()
        torch.manual_seed(0)
        plugin(model, batch, cache)
    tokens = StepCache(model, batch).image_tokens
    exact, default = seen[0][6:12], seen[1][6:12]  # the negative image of each text
    assert torch.equal(exact, tokens[partner])
    for t in range(6):
        assert not torch.equal(default[t], tokens[partner[t]]) and not torch.equal(default[t], tokens[t])


def test_config_switch_reaches_both_plugins():
    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        default = compose(config_name="train")
        exact = compose(config_name="train", overrides=["loss.itc.id_positives=false", "loss.itm.id_positives=false"])
    assert instantiate(default.loss.itc).id_positives and instantiate(default.loss.itm).id_positives
    assert not instantiate(exact.loss.itc).id_positives and not instantiate(exact.loss.itm).id_positives
