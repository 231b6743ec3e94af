"""``python -m xvlm_lit.demo_tasks`` (``make demo-tasks``): fine-tune and evaluate every task on the shapes world.

1. the pre-training demo (``python -m xvlm_lit.train``) into ``outputs/demo/pretrain`` unless its
   ``checkpoints/last.ckpt`` exists;
2. the task folders (``python -m data_prep.shapes_tasks``) under ``$XVLM_DATA/shapes_tasks`` unless present;
3. per task experiment: zero-shot evaluation of the pre-trained checkpoint (``python -m xvlm_lit.eval``), the
   task's domain pre-stage where the paper has one (NLVR2's text assignment, ``nlvr2_pretrain_demo``), then
   fine-tuning (``python -m xvlm_lit.train experiment=<task>``), each in ``outputs/demo/<experiment>[_zeroshot]``;
4. one table: zero-shot, fine-tuned and a trivial baseline per task, also written to ``outputs/demo/tasks.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from xvlm_lit.evaluation.grounding import best_constant_box
from xvlm_lit.evaluation.retrieval import chance_recall

OUT = Path("outputs/demo")
PRETRAIN_CKPT = OUT / "pretrain" / "checkpoints" / "last.ckpt"
#: (experiment, init key, zero-shot?, test split, [(label, metric, baseline: a name of :func:`baselines` or
#: "@<metric the run logs>")])
#: domain pre-stages run before a task's fine-tuning, which then starts from the pre-stage's last.ckpt
PRE_STAGES = {"nlvr2_demo": "nlvr2_pretrain_demo"}
TASKS = [
    ("retrieval_demo", "model.init_from", True, "test",
     [("TR@1", "tr_r1", "chance"), ("IR@1", "ir_r1", "chance"), ("R mean", "r_mean", "chance")]),
    ("grounding_demo", "model.init_from", True, "test", [("Acc@0.5", "acc50", "best constant box")]),
    ("grounding_weak_demo", "model.init_from", True, "test", [("Acc@0.5", "acc50", "@random_box_acc50")]),
    ("vqa_demo", "task.init_from", False, "test", [("VQA acc", "vqa_acc", "@majority_acc")]),
    ("nlvr2_demo", "task.init_from", False, "test1", [("accuracy", "acc", "@majority_acc")]),
    ("caption_demo", "task.init_from", False, "test", [("CIDEr", "cider", "@constant_cider")]),
]
#: task folders written from the shapes world: (module, arguments after --shapes, folder that must exist)
FOLDERS = [("data_prep.shapes_tasks", ["--out", "{root}"], "grounding/dets.json"),
           ("data_prep.shapes_vqa", ["--out", "{root}/vqa"], "vqa/manifest.json"),
           ("data_prep.shapes_nlvr2", ["--out", "{root}"], "nlvr2/manifest.json"),
           ("data_prep.shapes_caption", ["--out", "{root}"], "caption/manifest.json")]


def data_dir() -> Path:
    return Path(os.environ.get("XVLM_DATA", "data"))


def sh(args: list[str]) -> None:
    """Run ``python -m ...`` and stop the demo with its exit code when it fails."""
    print("+ python -m " + " ".join(args), flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args], check=False)
    if done.returncode:
        raise SystemExit(f"`python -m {' '.join(args)}` failed with exit code {done.returncode}")
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def experiment_exists(name: str) -> bool:
    from xvlm_lit.config import CONF_DIR

    return (CONF_DIR / "experiment" / f"{name}.yaml").is_file()


def baselines(folder: Path, test_split: str = "test") -> dict[str, dict[str, float]]:
    """Trivial baselines on the test split: chance retrieval, best constant box."""
    out: dict[str, dict[str, float]] = {}
    rows = [json.loads(x) for x in (folder / "retrieval" / f"{test_split}.jsonl").read_text().splitlines() if x]
    chance = chance_recall(len(rows), sum(len(r["captions"]) for r in rows))
    chance["r_mean"] = sum(chance.values()) / len(chance)
    out["chance"] = chance
    boxes = []
    for line in (folder / "grounding" / f"{test_split}.jsonl").read_text().splitlines():
        r = json.loads(line)
        x, y, w, h = r["bbox"]
        boxes += [[(x + w / 2) / r["width"], (y + h / 2) / r["height"], w / r["width"], h / r["height"]]] * len(
            r["texts"])
    out["best constant box"] = {"acc50": best_constant_box(torch.tensor(boxes))[1]}
    return out


def run_task(experiment: str, init_key: str, zero_shot: bool, reuse: bool = False
             ) -> tuple[dict[str, float], dict[str, float]]:
    """Zero-shot evaluation (tasks whose heads exist after pre-training) and fine-tuning of one task experiment
    (``reuse``: keep runs that finished before). Returns (zero-shot metrics or {}, fine-tuned metrics)."""
    zero, tuned = OUT / f"{experiment}_zeroshot", OUT / experiment
    if zero_shot and not (reuse and (zero / "metrics.json").is_file()):
        sh(["xvlm_lit.eval", f"experiment={experiment}", f"ckpt_path={PRETRAIN_CKPT.resolve()}",
            f"hydra.run.dir={zero}"])
    start = PRETRAIN_CKPT.resolve()
    if experiment in PRE_STAGES:
        pre = OUT / PRE_STAGES[experiment]
        if not (reuse and (pre / "checkpoints" / "last.ckpt").is_file()):
            sh(["xvlm_lit.train", f"experiment={PRE_STAGES[experiment]}", f"task.init_from={start}",
                f"hydra.run.dir={pre}"])
        start = (pre / "checkpoints" / "last.ckpt").resolve()
    if not (reuse and (tuned / "metrics.json").is_file()):
        sh(["xvlm_lit.train", f"experiment={experiment}", f"{init_key}={start}", f"hydra.run.dir={tuned}"])
    zero_metrics = json.loads((zero / "metrics.json").read_text()) if zero_shot else {}
    return zero_metrics, json.loads((tuned / "metrics.json").read_text())


def table(results: list[tuple[str, str, float, float, float, str]]) -> str:
    head = ("task", "metric (test)", "zero-shot", "fine-tuned", "baseline")
    rows = [head] + [(t, m, f"{z:.2f}", f"{f:.2f}", f"{b:.2f} ({name})") for t, m, z, f, b, name in results]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xvlm_lit.demo_tasks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="*", default=[t[0] for t in TASKS], help="task experiments to run")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the runs of an earlier call that finished (their metrics.json exists)")
    args = parser.parse_args(argv)
    if not PRETRAIN_CKPT.is_file():
        sh(["xvlm_lit.train", f"hydra.run.dir={OUT / 'pretrain'}"])
    folder = data_dir() / "shapes_tasks"
    for module, extra, marker in FOLDERS:
        if not (folder / marker).is_file():
            sh([module, "--shapes", str(data_dir() / "shapes"), *(a.format(root=folder) for a in extra)])
    base = baselines(folder)
    results = []
    for experiment, init_key, zero_shot, split, metrics in TASKS:
        if experiment not in args.tasks or not experiment_exists(experiment):
            continue
        zero, tuned = run_task(experiment, init_key, zero_shot, args.reuse)
        for label, key, base_name in metrics:
            name = f"test/{split}/{key}"
            b = (tuned.get(f"test/{split}/{base_name[1:]}", float("nan")) if base_name.startswith("@")
                 else base[base_name][key])
            results.append((experiment, label, zero.get(name, float("nan")), tuned[name], b, base_name.lstrip("@")))
    text = table(results)
    print(text, flush=True)
    (OUT / "tasks.json").write_text(json.dumps([dict(zip(("task", "metric", "zero_shot", "fine_tuned", "baseline",
                                                          "baseline_name"), r, strict=True)) for r in results],
                                               indent=2) + "\n")
    print(f"table written to {(OUT / 'tasks.json').resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
