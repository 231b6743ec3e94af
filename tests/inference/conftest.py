"""A tiny random X-VLM saved as a run of this project (Lightning checkpoint + .hydra/config.yaml), and tiny
grounding / retrieval task folders of non-square images drawn here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from ..conftest import compose_model

#: xvlm_tiny made smaller (64 px, 64-d vision, 64-d BERT); the real vocabulary so the real tokenizer fits
TINY = ["vision.image_size=64", "vision.embed_dim=32", "fusion.vision_width=64", "text.bert.hidden_size=64",
        "text.bert.num_attention_heads=2", "text.bert.intermediate_size=128", "text.num_layers=1",
        "fusion.num_layers=1", "embed_dim=32"]
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
SIZES = [(96, 64), (80, 120), (100, 100), (128, 72)]


def draw_images(folder: Path) -> list[dict]:
    """Four non-square images, each with one coloured rectangle; returns records with its box and texts."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for n, ((w, h), (name, rgb)) in enumerate(zip(SIZES, COLOURS.items(), strict=True)):
        img = Image.new("RGB", (w, h), (245, 245, 240))
        box = [w * 0.1 + 3 * n, h * 0.2, w * 0.5, h * 0.4]
        ImageDraw.Draw(img).rectangle([box[0], box[1], box[0] + box[2], box[1] + box[3]], fill=rgb)
        path = folder / f"img{n}.png"
        img.save(path)
        records.append({"image": path.name, "image_id": f"img{n}", "width": w, "height": h, "bbox": box,
                        "texts": [f"the {name} rectangle", f"a {name} box on the left"],
                        "captions": [f"a {name} rectangle on a white background", f"one {name} shape"]})
    return records


def write_task(root: Path, task: str, records: list[dict], image_root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"task": task, "image_root": str(image_root)}))
    keys = ("image", "image_id", "width", "height") + (("bbox", "texts") if task == "grounding" else ("captions",))
    with open(root / "val.jsonl", "w") as fp:
        for rec in records:
            fp.write(json.dumps({k: rec[k] for k in keys}) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """``images`` (four PNGs), ``grounding`` and ``retrieval`` task folders (one ``val`` split each)."""
    root = tmp_path_factory.mktemp("inference_data")
    records = draw_images(root / "images")
    return {"images": root / "images", "grounding": write_task(root / "grounding", "grounding", records,
                                                                  root / "images"),
            "retrieval": write_task(root / "retrieval", "retrieval", records, root / "images")}


def tiny_model(seed: int = 0):
    from xvlm_lit.build import build_model

    torch.manual_seed(seed)
    node = compose_model("xvlm_tiny", TINY)
    return node, build_model(node, load_weights=False).eval()


def save_run(run: Path, node, model, data: dict, task: dict | None = None, loss: tuple[str, ...] = ("itc",)) -> Path:
    """``run/checkpoints/last.ckpt`` (Lightning layout: ``state_dict`` with ``model.`` keys) + ``run/.hydra``."""
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    (run / "checkpoints").mkdir(exist_ok=True)
    cfg = OmegaConf.create({"model": OmegaConf.to_container(node, resolve=True), "data": data,
                            "task": task or {"_target_": "xvlm_lit.tasks.grounding.GroundingModule"},
                            "loss": {name: {"_target_": "x"} for name in loss},
                            "paths": {"output_dir": "${hydra:runtime.output_dir}"}})
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    ckpt = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 0,
                "global_step": 1}, ckpt)
    return ckpt


def grounding_data_node(root: Path, max_tokens: int = 30) -> dict:
    return {"_target_": "xvlm_lit.data.tasks.datamodule.TaskDataModule", "task": "grounding", "root": str(root),
            "image_size": "${model.vision.image_size}", "max_tokens": max_tokens, "max_words": 30,
            "tokenizer_path": None, "val_split": "val", "test_splits": ["val"], "num_workers": 0,
            "batch_size": 4, "eval_batch_size": 3}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_data) -> dict:
    """A tiny random X-VLM saved as a grounding run: ``ckpt``, ``node``, ``model``, ``data`` (config dict)."""
    node, model = tiny_model()
    data = grounding_data_node(tiny_data["grounding"])
    ckpt = save_run(tmp_path_factory.mktemp("run"), node, model, data)
    return {"ckpt": ckpt, "node": node, "model": model, "data": data}
