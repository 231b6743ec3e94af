"""The gpu_fsdp trainer config and its auto-wrap policy (FSDP itself needs an accelerator in torch 2.14: no CPU run)."""

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.strategies import FSDPStrategy
from timm.models.swin_transformer import SwinTransformerBlock
from transformers.models.bert.modeling_bert import BertLayer

from xvlm_lit.config import CONF_DIR
from xvlm_lit.models.fusion import FusionLayer
from xvlm_lit.models.wrap import block_classes
from xvlm_lit.testing import micro_xvlm


def test_gpu_fsdp_config_builds_lightning_fsdp_with_the_block_policy():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["trainer=gpu_fsdp"])
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {SwinTransformerBlock, BertLayer, FusionLayer}
    assert strategy.kwargs["use_orig_params"] is True  # the 4 named AdamW groups need the original parameters
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"


def test_block_policy_covers_every_repeated_block_of_the_model():
    model = micro_xvlm()
    blocks = [m for m in model.modules() if isinstance(m, tuple(block_classes()))]
    # micro model: 2 Swin stages of 1 block, 1 text layer, 1 fusion layer
    assert [type(b).__name__ for b in blocks] == ["SwinTransformerBlock", "SwinTransformerBlock", "BertLayer",
                                                   "FusionLayer"]
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    outside = [n for n, p in model.named_parameters() if id(p) not in in_blocks]
    assert all(n.startswith(("vision_encoder.backbone.patch_embed", "vision_encoder.backbone.layers.1.downsample",
                             "vision_encoder.backbone.norm", "text_encoder.bert.embeddings", "vision_proj",
                             "text_proj", "temp", "itm_head", "bbox_head", "mlm_head")) for n in outside), outside
