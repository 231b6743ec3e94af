"""``python -m xvlm_lit.checkpoints``: ``export`` our weights (reference layout or safetensors) and ``inspect`` a file.

Examples::

    python -m xvlm_lit.checkpoints export --ckpt outputs/demo/pretrain/checkpoints/last.ckpt --out xvlm_ref.th
    python -m xvlm_lit.checkpoints export --model xvlm_base --ckpt 4m_base_model_state_step_199999.th \\
        --out base_384.safetensors --format safetensors vision.image_size=384 vision.window_size=12
    python -m xvlm_lit.checkpoints inspect 4m_base_model_state_step_199999.th
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from xvlm_lit.checkpoints.exporter import save_reference, save_safetensors
from xvlm_lit.checkpoints.importer import CheckpointMismatchError, init_from
from xvlm_lit.checkpoints.run_config import load_run_config, run_config_path
from xvlm_lit.checkpoints.sources import read_source

REPO_CONF = Path(__file__).resolve().parents[3] / "conf"


def find_model_yaml(name: str) -> Path:
    """A yaml path, or a name in ``conf/model/`` (of the working directory, then of this checkout)."""
    path = Path(name)
    if path.is_file():
        return path
    stem = name.removesuffix(".yaml")
    for root in (Path.cwd() / "conf", REPO_CONF):
        if (root / "model" / f"{stem}.yaml").is_file():
            return root / "model" / f"{stem}.yaml"
    raise FileNotFoundError(f"model config {name!r}: not a file, and no conf/model/{stem}.yaml in {Path.cwd()} "
                            f"or {REPO_CONF.parent}")


def build_model(name: str | None, overrides: Sequence[str] = (), ckpt: str | Path | None = None) -> nn.Module:
    """Instantiate the model of a model yaml (or of a composed config's ``model`` node), with ``key=value``
    overrides relative to the model node. ``name=None``: the ``model`` node of the run config saved beside
    ``ckpt`` (``<run>/.hydra/config.yaml``). Pretrained initialisers (``bert_path``, ``vision.pretrained_path``) are
    switched off: the weights come from the checkpoint."""
    from omegaconf import OmegaConf

    if name is None:
        cfg = run_config_of(ckpt)  # whole config: the model node may interpolate other nodes
    else:
        node = OmegaConf.load(find_model_yaml(name))
        if "_target_" not in node and "model" in node:
            node = node.model
        cfg = OmegaConf.create({"model": node})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        OmegaConf.update(cfg, f"model.{key.removeprefix('model.')}", OmegaConf.from_dotlist([f"v={value}"]).v,
                         force_add=False)
    from xvlm_lit.build import build_model as build  # lazy: the CLI sits above models

    return build(cfg.model, load_weights=False)


def run_config_of(ckpt: str | Path | None):
    """The run config beside ``ckpt`` (its ``model`` node builds the model); a clear error when there is none."""
    config = run_config_path(ckpt) if ckpt is not None else None
    if config is None:
        raise SystemExit(f"--model not given and no run config (.hydra/config.yaml) beside {ckpt}: give the model "
                         "the checkpoint was trained with, e.g. --model xvlm_tiny or --model path/to/config.yaml")
    print(f"model from the run config {config}", file=sys.stderr)
    return load_run_config(ckpt)


def cmd_export(args: argparse.Namespace) -> int:
    model = build_model(args.model, args.overrides, ckpt=args.ckpt)
    try:
        report = init_from(model, args.ckpt)
    except CheckpointMismatchError as err:
        raise SystemExit(f"{err}\n{_model_hint(args)}") from None
    print(report.summary(), file=sys.stderr)
    if args.format == "reference":
        out = save_reference(model, args.out)
    else:
        out = save_safetensors(model, args.out)
    print(f"wrote {out} ({args.format})")
    return 0


def _model_hint(args: argparse.Namespace) -> str:
    """What to try when the model does not fit the checkpoint."""
    config = run_config_path(args.ckpt)
    if args.model is not None and config is not None:
        return (f"the checkpoint was trained with the model in {config}: drop --model {args.model} to use it "
                "(or give --model the config the checkpoint was trained with)")
    return ("is the model the one the checkpoint was trained with? Give --model <conf/model name or yaml> "
            "(xvlm_tiny for the demo, xvlm_base for the reference checkpoints) and the same overrides")


def cmd_inspect(args: argparse.Namespace) -> int:
    src = read_source(args.file)
    sd = src.state_dict
    total = sum(v.numel() for v in sd.values())
    print(f"{args.file}: {src.kind}, {src.layout} layout (by key names), {len(sd)} tensors, {total:,} elements")
    if src.ignored:
        print(f"other entries: {src.ignored}")
    for key, value in sd.items():
        print(f"{key}\t{list(value.shape)}\t{str(value.dtype).removeprefix('torch.')}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xvlm_lit.checkpoints", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="export weights to the reference layout or to safetensors (ours)")
    e.add_argument("--model", "--config-name", default=None,
                   help="model yaml path or a conf/model name (xvlm_base, xvlm_tiny), or a composed config; default: "
                        "the model of the run config saved beside --ckpt (<run>/.hydra/config.yaml)")
    e.add_argument("--ckpt", required=True, help="Lightning .ckpt, our safetensors, or a reference .th/.pth")
    e.add_argument("--out", required=True, help="output file")
    e.add_argument("--format", choices=("reference", "safetensors"), default="reference",
                   help="reference: torch {'model': state_dict} in X-VLM names; safetensors: our layout")
    e.add_argument("overrides", nargs="*", help="model overrides key=value, e.g. vision.image_size=384")
    e.set_defaults(func=cmd_export)
    i = sub.add_parser("inspect", help="list the tensors of a checkpoint file")
    i.add_argument("file")
    i.set_defaults(func=cmd_inspect)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)
