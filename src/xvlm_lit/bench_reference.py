"""``python -m xvlm_lit.bench_reference --ref-dir DIR``: the reference X-VLM's pre-training step, timed as ours.

DIR holds the reference's ``models/``, ``utils/`` and ``configs/`` (github.com/zengyan-97/X-VLM, extracted with
``git archive HEAD models utils configs | tar x``). On transformers 5 three imports of ``models/xbert.py`` /
``models/xroberta.py`` need moving (``apply_chunking_to_forward``/``prune_linear_layer`` now live in
``transformers.pytorch_utils``; ``find_pruneable_heads_and_indices`` is gone and only serves head pruning) and
``utils/__init__.py``'s CIDEr import needs ``six``: :func:`patch_reference` makes those edits in DIR (a scratch copy).

The step: Swin-B 224 + BERT 6+6 built from the reference's own configs (random init: ``BertForMaskedLM`` from its
config instead of ``from_pretrained``), its forward (ITC + ITM + MLM; a 1-process gloo group for its all-gathers),
backward, grad-norm clip 1.0 and torch AdamW over the reference's 4 groups (its ``transformers.AdamW`` no longer
exists; torch's default CPU implementation is its closest stand-in). Inputs are :func:`xvlm_lit.testing.random_batch`
draws, the same as :mod:`xvlm_lit.bench` uses. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

PATCHES = {
    "models/xbert.py": [("""from transformers.modeling_utils import (
    PreTrainedModel,
    apply_chunking_to_forward,
    find_pruneable_heads_and_indices,
    prune_linear_layer,
)""", """from transformers.modeling_utils import PreTrainedModel
from transformers.pytorch_utils import apply_chunking_to_forward, prune_linear_layer
find_pruneable_heads_and_indices = None""")],
    "utils/__init__.py": [("from utils.cider.pyciderevalcap.ciderD.ciderD import CiderD", "CiderD = None")],
}
PATCHES["models/xbert.py"] += [
    ("self.init_weights()", "self.post_init()"),  # v5 sets its weight-tying state there
    ("head_mask = self.get_head_mask(head_mask, self.config.num_hidden_layers)",
     "head_mask = [None] * self.config.num_hidden_layers"),  # v5 dropped head masks; None = no mask, as before
]
PATCHES["models/xroberta.py"] = PATCHES["models/xbert.py"]


def patch_reference(ref_dir: Path) -> None:
    """Apply the import moves above in ``ref_dir`` (idempotent)."""
    for rel, edits in PATCHES.items():
        path = ref_dir / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a reference X-VLM checkout (extract models/ utils/ configs/)")
        text = path.read_text()
        for old, new in edits:
            text = text.replace(old, new)
        path.write_text(text)


def _invert_attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
    """transformers 4's ``ModuleUtilsMixin.invert_attention_mask`` (gone in 5): 1/0 ``[B, L]`` or ``[B, Lq, L]``
    -> additive bias ``[B, 1, (1|Lq), L]``."""
    ext = mask[:, None, :, :] if mask.dim() == 3 else mask[:, None, None, :]
    ext = ext.to(dtype=self.dtype)
    return (1.0 - ext) * torch.finfo(self.dtype).min


def build_reference(ref_dir: Path):
    """The reference pre-training model (``models.model_pretrain.XVLM``) with random weights."""
    sys.path.insert(0, str(ref_dir))
    os.chdir(ref_dir)  # its configs are read by relative path
    from models import xvlm as ref_xvlm
    from models.model_pretrain import XVLM as RefXVLM

    def from_config(path, config, output_loading_info=True):
        model = ref_xvlm.BertForMaskedLM(config)
        missing = [n for n, _ in model.named_parameters() if "crossattention" in n]
        return model, {"missing_keys": missing, "unexpected_keys": []}

    ref_xvlm.BertForMaskedLM.from_pretrained = staticmethod(from_config)
    ref_xvlm.BertModel.invert_attention_mask = _invert_attention_mask
    config = {"use_clip_vit": False, "use_swin": True, "vision_config": "configs/config_swinB_224.json",
              "image_res": 224, "patch_size": 32, "use_roberta": False, "text_config": "configs/config_bert.json",
              "text_encoder": "unused", "embed_dim": 256, "temp": 0.07, "max_tokens": 40}
    model = RefXVLM.__new__(RefXVLM)
    ref_xvlm.XVLMBase.__init__(model, config, load_vision_params=False, load_text_params=True,
                               use_contrastive_loss=True, use_matching_loss=True, use_mlm_loss=True,
                               use_bbox_loss=True)
    mlm = model.text_encoder
    mlm.cls.predictions.decoder.weight = mlm.bert.embeddings.word_embeddings.weight  # BERT's tying, as in v4
    return model


def reference_groups(model, lr: float = 1e-4, wd: float = 0.01, lr_mult: float = 2.0) -> list[dict]:
    """The reference's ``optim.create_optimizer`` groups (decay x new-part lr)."""
    no_decay = ("bias", "LayerNorm.bias", "LayerNorm.weight", "norm.bias", "norm.weight", "norm1.bias",
                "norm1.weight", "norm2.bias", "norm2.weight")
    large = set(model.init_params)
    groups = [{"params": [], "weight_decay": wd, "lr": lr}, {"params": [], "weight_decay": 0.0, "lr": lr},
              {"params": [], "weight_decay": wd, "lr": lr * lr_mult},
              {"params": [], "weight_decay": 0.0, "lr": lr * lr_mult}]
    for n, p in model.named_parameters():
        nd = any(s in n for s in no_decay)
        groups[(2 if n in large else 0) + (1 if nd else 0)]["params"].append(p)
    return groups


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref-dir", required=True, type=Path)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=30)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ref_dir = args.ref_dir.resolve()
    patch_reference(ref_dir)
    import torch.distributed as dist

    from xvlm_lit.bench_machine import peak_memory
    from xvlm_lit.testing import random_batch

    dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
    torch.manual_seed(0)
    model = build_reference(ref_dir).train()

    class Shape:  # random_batch reads these
        image_size, grid_size = 224, 7
        text_encoder = type("T", (), {"spec": type("S", (), {"vocab_size": 30522})()})()

    batches = [random_batch(Shape(), args.batch, 1, args.tokens, 6, seed=s, regions=False) for s in range(2)]
    opt = torch.optim.AdamW(reference_groups(model), lr=1e-4, eps=1e-8, betas=(0.9, 0.98))
    rows = []
    for i in range(args.warmup + args.steps):
        b = batches[i % 2]
        c0, t0 = time.process_time(), time.perf_counter()
        itc, itm, mlm = model(b.images, b.text_ids, b.text_mask, text_ids_masked=b.masked_ids,
                              masked_pos=b.masked_pos, masked_ids=b.masked_labels)
        loss = itc + itm + mlm
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        rows.append({"forward_s": t1 - t0, "backward_s": t2 - t1, "optimizer_s": t3 - t2, "step_s": t3 - t0,
                     "step_cpu_s": time.process_time() - c0})
    rows = rows[args.warmup:]
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    out.update(batch=args.batch, threads=torch.get_num_threads(), pairs_per_s=args.batch / out["step_s"],
               parameters_m=sum(q.numel() for q in model.parameters()) / 1e6, **peak_memory("cpu"))
    dist.destroy_process_group()
    print(json.dumps({"reference": out}))
    return out


if __name__ == "__main__":
    main()
