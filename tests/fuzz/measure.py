"""Push the fuzz corpus (``xvlm_lit.testing_fuzz``) through every reader and collect what each one reports.

``measure_all(tmp)`` returns ``{reader: Measured}``; ``report_table`` formats it as the markdown table of
docs/reliability_fuzz.md (``python -m tests.fuzz.measure`` prints it).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xvlm_lit import testing_fuzz as fz
from xvlm_lit.data.decode import stable_id
from xvlm_lit.data.readers import endless_raw
from xvlm_lit.data.samples import SampleMaker
from xvlm_lit.data.skips import SkipCounter, add_counts
from xvlm_lit.data.sources import make_source
from xvlm_lit.data.streams import StreamSettings
from xvlm_lit.data.val_stream import ValStream

R = 32


@dataclass
class Measured:
    """What one reader made of its corpus: the ids (or count) of the good items and the skips by reason."""

    input: str
    good: list[str]
    skipped: dict[str, int]
    expected_good: list[str]
    expected_skipped: dict[str, int]


def _spec(root: Path):
    return make_source({"name": "fuzz", "urls": str(root), "streams": ["itc", "region"]})


def train_decode(corpus: fz.ShardCorpus, stream: str) -> Measured:
    """One pass of the training reader (``endless_raw`` over both shards) through the train-mode sample maker."""
    spec, counter = _spec(corpus.root), SkipCounter("fuzz train")
    maker, rng = SampleMaker(R, 30, train=True, counter=counter, randaugment=True), np.random.default_rng(0)
    make = maker.itc if stream == "itc" else maker.region
    items = [make(raw, spec, rng) for raw in endless_raw(spec, range(spec.units), counter)]
    return Measured("shards", [it.image_id for it in items if it is not None], dict(counter.totals),
                    corpus.good_ids(stream), corpus.expected_skips(stream))


def val_stream(corpus: fz.ShardCorpus) -> Measured:
    """The validation stream: every sample once, both streams from one read (``SampleMaker.pair``)."""
    settings = StreamSettings(image_size=R, patch_size=16, max_tokens=24, batch_size=4, region_batch_size=8,
                              region_images=3, max_masks=4)
    stream = ValStream([_spec(corpus.root)], settings)
    skipped: Counter[str] = Counter()
    ids = []
    for batch in stream.iterate():
        add_counts(skipped, batch["skipped"])
        ids += [int(i) for i, v in zip(batch["itc"].idx, batch["itc"].valid, strict=True) if v]
    by_id = {stable_id(i): i for i in corpus.good_ids("itc")}
    return Measured("shards", [by_id.get(i, f"unexpected {i}") for i in ids], dict(skipped),
                    corpus.good_ids("itc"), corpus.expected_pair_skips())


def zero_shot(corpus: fz.ShardCorpus, kind: str) -> Measured:
    """Zero-shot retrieval / grounding evaluation data."""
    from xvlm_lit.data.eval_data import load_grounding_eval, load_retrieval_eval

    if kind == "retrieval":
        data = load_retrieval_eval(str(corpus.root), R, max_tokens=24)
        return Measured("shards", data.image_ids, data.skipped, corpus.good_ids("itc"), corpus.expected_skips("itc"))
    data = load_grounding_eval(str(corpus.root), R, max_tokens=24)
    return Measured("shards", data.image_ids, data.skipped, corpus.good_ids("region"),
                    corpus.expected_grounding_skips())


def _task_items(dataset, task_corpus: fz.TaskCorpus, records: int, line_skips: dict[str, int]) -> Measured:
    good = [str(k) for k in range(len(dataset)) if dataset[k] is not None]
    skipped = Counter(line_skips)
    skipped.update(dataset.skips.totals)
    expected = Counter(task_corpus.line_skips) + Counter(task_corpus.text_skips) + Counter(task_corpus.item_skips)
    assert records == task_corpus.records, (records, task_corpus.records)
    return Measured("task folder", good, dict(skipped), [str(k) for k in range(task_corpus.good_items)],
                    dict(expected))


def task_reader(root: Path, task: str) -> Measured:
    """A task folder's train split through its reader and training dataset."""
    from xvlm_lit.data.tasks.annotations import read_split
    from xvlm_lit.data.tasks.caption import CaptionTrainSet, read_caption_split
    from xvlm_lit.data.tasks.grounding import GroundingSet
    from xvlm_lit.data.tasks.retrieval import RetrievalTrainSet
    from xvlm_lit.data.transforms import ImageTextTransform

    corpus = fz.write_task_folder(root, "grounding" if task == "grounding" else "retrieval")
    if task == "caption":  # the caption format is the retrieval one: same lines, the manifest says caption
        manifest = (root / "manifest.json").read_text().replace('"retrieval"', '"caption"')
        (root / "manifest.json").write_text(manifest)
        split = read_caption_split(root, "train")
        dataset = CaptionTrainSet(split, ImageTextTransform(R, train=True))
    elif task == "retrieval":
        split = read_split(root, "train", "retrieval")
        dataset = RetrievalTrainSet(split, ImageTextTransform(R, train=True))
    else:
        split = read_split(root, "train", "grounding")
        dataset = GroundingSet(split, R, train=True)
    return _task_items(dataset, corpus, len(split.records), split.skipped)


def vqa_nlvr2_reader(root: Path, task: str) -> Measured:
    """The VQA / NLVR2 train split through its reader and training dataset."""
    from xvlm_lit.data.tasks.nlvr2 import NLVR2Set, read_nlvr2_split
    from xvlm_lit.data.tasks.vqa import VQATrainSet, read_vqa_split
    from xvlm_lit.data.transforms import ImageTextTransform

    if task == "vqa":
        corpus = fz.write_vqa_folder(root)
        split = read_vqa_split(root, "train")
        dataset = VQATrainSet(split, ImageTextTransform(R, train=True))
    else:
        corpus = fz.write_nlvr2_folder(root)
        split = read_nlvr2_split(root, "train")
        dataset = NLVR2Set(split, R, train=True)
    return _task_items(dataset, corpus, len(split.records), split.skipped)


def converter(root: Path) -> Measured:
    """``data_prep.xvlm_jsonl`` (the shared converter pipeline of every ``data_prep`` converter)."""
    from data_prep import xvlm_jsonl

    corpus = fz.write_reference_jsonl(root)
    manifest = xvlm_jsonl.convert_jsonl([str(corpus.path)], root / "out", source="fuzz", max_side=64,
                                        shard_size=4, workers=1, progress=False)
    skipped = {k: v["count"] for k, v in manifest["skipped"].items()}
    skipped |= {f"{k} (dropped)": v["count"] for k, v in manifest["dropped"].items()}
    expected = corpus.skipped | {f"{k} (dropped)": v for k, v in corpus.dropped.items()}
    return Measured("reference jsonl", [str(manifest["counts"]["images"])], skipped, [str(corpus.kept)], expected)


def coco_converter(root: Path) -> Measured:
    """``data_prep.coco`` over a COCO-style file with wrong-typed entries (the reader of COCO and Objects365)."""
    import json

    from data_prep import coco

    corpus = fz.write_coco_json(root)
    rc = coco.main(["--captions", str(corpus.path), "--images", str(root / "images"), "--out", str(root / "out"),
                    "--no-progress", "--workers", "1", "--include-karpathy-eval", "--max-side", "64"])
    assert rc == 0
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    skipped = {k: v["count"] for k, v in manifest["skipped"].items()}
    skipped |= {f"{k} (dropped)": v["count"] for k, v in manifest["dropped"].items()}
    expected = corpus.skipped | {f"{k} (dropped)": v for k, v in corpus.dropped.items()}
    return Measured("COCO-style json", [str(manifest["counts"]["images"])], skipped, [str(corpus.kept)], expected)


READERS = {
    "train stream, image-text (`SampleMaker.itc`, train mode)": lambda c, t: train_decode(c, "itc"),
    "train stream, region (`SampleMaker.region`, train mode)": lambda c, t: train_decode(c, "region"),
    "validation stream (`ValStream`)": lambda c, t: val_stream(c),
    "zero-shot retrieval data (`load_retrieval_eval`)": lambda c, t: zero_shot(c, "retrieval"),
    "zero-shot grounding data (`load_grounding_eval`)": lambda c, t: zero_shot(c, "grounding"),
    "task retrieval (`read_split` + `RetrievalTrainSet`)": lambda c, t: task_reader(t / "retrieval", "retrieval"),
    "task grounding (`read_split` + `GroundingSet`)": lambda c, t: task_reader(t / "grounding", "grounding"),
    "task captioning (`read_caption_split` + `CaptionTrainSet`)": lambda c, t: task_reader(t / "caption", "caption"),
    "task VQA (`read_vqa_split` + `VQATrainSet`)": lambda c, t: vqa_nlvr2_reader(t / "vqa", "vqa"),
    "task NLVR2 (`read_nlvr2_split` + `NLVR2Set`)": lambda c, t: vqa_nlvr2_reader(t / "nlvr2", "nlvr2"),
    "converter (`data_prep.xvlm_jsonl`)": lambda c, t: converter(t / "jsonl"),
    "converter (`data_prep.coco`)": lambda c, t: coco_converter(t / "coco"),
}


def measure_all(tmp: Path) -> dict[str, Measured]:
    corpus = fz.write_shards(tmp / "shards")
    return {name: fn(corpus, tmp) for name, fn in READERS.items()}


def report_table(measured: dict[str, Measured]) -> str:
    """Markdown: one row per reader with its good items, crashes (always 0 here: a crash fails the run) and skips."""
    rows = ["| reader | input | good items | crashes | skipped, by reason |", "|---|---|---|---|---|"]
    for name, m in measured.items():
        good = m.good[0] if name.startswith("converter") else str(len(m.good))
        skips = ", ".join(f"{k} {v}" for k, v in sorted(m.skipped.items()))
        rows.append(f"| {name} | {m.input} | {good} | 0 | {skips} |")
    return "\n".join(rows)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # converters print
        table = report_table(measure_all(Path(tmp)))
    sys.stdout.write(table + "\n")
