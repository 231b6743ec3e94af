"""VQA v2 (the official question / annotation files, Visual Genome QA, or the X-VLM release's json files) ->
vqa task files.

    python -m data_prep.vqa --questions v2_OpenEnded_mscoco_train2014_questions.json \\
        --annotations v2_mscoco_train2014_annotations.json \\
        --questions v2_OpenEnded_mscoco_val2014_questions.json --annotations v2_mscoco_val2014_annotations.json \\
        --questions v2_OpenEnded_mscoco_test2015_questions.json \\
        --questions v2_OpenEnded_mscoco_test-dev2015_questions.json \\
        --vg-qa question_answers.json --vg-images VG_ROOT --images COCO_ROOT --out OUT [--answer-list FILE]
    python -m data_prep.vqa --xvlm vqa_train.json --xvlm vqa_val.json --xvlm vg_qa.json --xvlm vqa_test.json \\
        --answer-list answer_list.json --images COCO_ROOT --vg-images VG_ROOT --out OUT

Inputs (each streamed):

- official questions ``{"questions": [{"image_id", "question", "question_id"}], "data_subtype", ...}`` and
  annotations ``{"annotations": [{"question_id", "image_id", "answers": [{"answer", "answer_confidence",
  "answer_id"}] x10, "multiple_choice_answer", ...}]}``, paired by their subtype (``train2014``, ``val2014``; from
  the file name, else the file's ``data_subtype``). ``test2015`` / ``test-dev2015`` questions have no annotations.
  Images ``COCO_<train2014|val2014|test2015>_<id:012d>.jpg`` under ``ROOT/<folder>/``, ``ROOT/`` or
  ``ROOT/images/<folder>/`` (train/val also ``ROOT/{train2017,val2017}/<id:012d>.jpg``).
- Visual Genome QA ``question_answers.json``: ``[{"id": image id, "qas": [{"qa_id", "image_id", "question",
  "answer", ...}]}]``, into ``train``; images ``<image_id>.jpg`` under ``VG_ROOT/VG_100K/``, ``VG_ROOT/VG_100K_2/``,
  ``VG_ROOT/`` (``--vg-images``, default ``--images``).
- the X-VLM release (``--xvlm [SPLIT=]FILE``): ``[{"question_id", "question", "answer": [str] | str,
  "image": "train2014/COCO_train2014_...jpg", "dataset": "vqa"|"vg"}]`` (``vqa_train.json``, ``vqa_val.json``,
  ``vg_qa.json`` -> train, ``vqa_test.json`` -> test; ``image`` relative to ``--images`` for vqa, to
  ``--vg-images`` for vg; train/val entries without a ``question_id`` get -1, -2, ... in input order).

One line per question, in input order, into ``train``, ``val``, ``test`` (test2015), ``test_dev`` (test-dev2015):
``{"image", "image_id": "coco/<id>"|"vg/<id>", "width", "height", "question_id", "question", "answers",
"answer_weights", "dataset": "vqa"|"vg"}``. ``answers`` are the published answers (10 for VQA, 1 for VG, none for the
test splits), stripped but not normalised (the VQA evaluator normalises); ``answer_weights`` maps each distinct answer
to its share of the answers (count / number of answers, X-VLM's ``vqa_dataset``), 0.5 for VG. ``answer_list.json``
(the candidate answers) is the ``--answer-list`` given (validated), else the ``--num-answers`` (3128) most frequent
answers (the most common answer of each train/val VQA question, counted; ties by text).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from data_prep import finetune_common as fc
from data_prep.convert import ConvertError
from data_prep.jsonstream import iter_array, iter_object

NUM_ANSWERS = 3128
ANSWER_LIST = "answer_list.json"
VG_WEIGHT = 0.5
SPLIT_ORDER = ("train", "val", "test", "test_dev")
# official subtype -> (output split, COCO image folder)
SUBTYPES = {"train2014": ("train", "train2014"), "val2014": ("val", "val2014"), "test2015": ("test", "test2015"),
            "test-dev2015": ("test_dev", "test2015")}
_SUBTYPE = re.compile(r"(train2014|val2014|test-?dev2015|test_dev2015|test2015)", re.IGNORECASE)
COCO_SUBDIRS = ("train2014", "val2014", "test2015")
VG_SUBDIRS = ("VG_100K", "VG_100K_2", "images", "image")
TESTS = ("test", "test_dev")
_NAMED = re.compile(r"^([A-Za-z0-9_]+)=(.+)$")


def _subtype_of_name(text: str) -> str | None:
    match = _SUBTYPE.search(text)
    if not match:
        return None
    found = match.group(1).lower().replace("_", "-")
    return "test-dev2015" if found in ("testdev2015", "test-dev2015") else found


def subtype(path: Path, array: str) -> str:
    """The official subtype of a questions/annotations file: from its name, else its ``data_subtype`` member."""
    by_name = _subtype_of_name(path.name)
    if by_name:
        return by_name
    for key, value in fc.guarded(iter_object(path, stream={array}), path):
        if key == "data_subtype" and isinstance(value, str) and _subtype_of_name(value):
            return _subtype_of_name(value)
    raise ConvertError(f"cannot tell the split of {path} (train2014, val2014, test2015 or test-dev2015) from its "
                       f"name or its data_subtype: rename it as published (v2_OpenEnded_mscoco_<subtype>_"
                       f"questions.json, v2_mscoco_<subtype>_annotations.json)")


def _array(path: Path, array: str, what: str) -> Iterator[Any]:
    """The elements of the top-level member ``array`` of the object in ``path`` (streamed)."""
    found = False
    for key, value in fc.guarded(iter_object(path, stream={array}), path):
        if key != array:
            continue
        if not isinstance(value, Iterator):
            raise ConvertError(f"{path}: '{array}' is a {type(value).__name__}, not an array: is it {what}?")
        found = True
        yield from fc.guarded(value, path)
    if not found:
        raise ConvertError(f"{path} has no '{array}' array: is it {what}?")


def answers_of(values: Any, dropped: Counter, intern: dict[str, str] | None = None) -> list[str]:
    """The published answers, stripped (plain strings or ``{"answer": str}`` objects); empty or malformed ones are
    counted in ``dropped`` (``empty_answer``, ``bad_answer``)."""
    out = []
    for value in values:
        text = value.get("answer") if isinstance(value, dict) else value
        if not isinstance(text, str):
            dropped["bad_answer"] += 1
        elif not text.strip():
            dropped["empty_answer"] += 1
        else:
            text = text.strip()
            out.append(intern.setdefault(text, text) if intern is not None else text)
    return out


def answer_weights(answers: list[str], each: float | None = None) -> dict[str, float]:
    """Each distinct answer (first-seen order) -> count / len(answers), or ``each`` (VG: 0.5)."""
    if each is not None:
        return dict.fromkeys(answers, each)
    counts = Counter(answers)
    return {a: counts[a] / len(answers) for a in dict.fromkeys(answers)}


def coco_images(image_id: int, folder: str) -> list[str]:
    name = f"COCO_{folder}_{image_id:012d}.jpg"
    out = [f"{folder}/{name}", name, f"images/{folder}/{name}"]
    if folder in ("train2014", "val2014"):
        out += [f"train2017/{image_id:012d}.jpg", f"val2017/{image_id:012d}.jpg"]
    return out


class _Places:
    """Where VG images are written from: relative to the image root when the VG root lies inside it, else
    absolute paths."""

    def __init__(self, root: Path, vg_root: Path):
        root, vg_root = root.resolve(), vg_root.resolve()
        try:
            rel = vg_root.relative_to(root).as_posix()
            self.prefix: str | None = "" if rel == "." else rel
        except ValueError:
            self.prefix = None
        self.vg_root = vg_root

    def vg(self, paths: list[str]) -> list[str]:
        if self.prefix is None:
            return [(self.vg_root / p).as_posix() if not p.startswith("/") else p for p in paths]
        return [f"{self.prefix}/{p}" if self.prefix and not p.startswith("/") else p for p in paths]


def _line(split: str, key: str, unique: str, image_id: str, images: list[str], qid: Any, question: str,
          answers: list[str], dataset: str, dropped: Counter) -> fc.Item:
    weights = answer_weights(answers, VG_WEIGHT if dataset == "vg" else None) if answers else {}
    return fc.Item(split=split, key=key, unique=unique, image_id=image_id, images=images,
                   fields={"question_id": qid, "question": question, "answers": answers, "answer_weights": weights,
                           "dataset": dataset}, dropped=dict(dropped))


# ----------------------------------------------------------------------------------------------- official VQA
def load_annotations(path: Path, ignored: Counter) -> dict[int, tuple[Any, ...]]:
    """question id -> ``(image_id, answers | None, dropped, problem)`` of an official annotations file."""
    out: dict[int, tuple[Any, ...]] = {}
    intern: dict[str, str] = {}
    for ann in _array(path, "annotations", "a VQA annotations file (v2_mscoco_<split>_annotations.json)"):
        qid = fc.as_id(ann.get("question_id")) if isinstance(ann, dict) else None
        if not fc.is_int(qid):
            ignored["annotation_without_question_id"] += 1
            continue
        if qid in out:
            ignored["duplicate_annotation"] += 1
            continue
        image_id, answers = fc.as_id(ann.get("image_id")), ann.get("answers")
        if not fc.is_int(image_id) or not isinstance(answers, list):
            out[qid] = (image_id, None, None, f"image_id {ann.get('image_id')!r}, answers {type(answers).__name__}")
            continue
        dropped: Counter = Counter()
        kept = answers_of(answers, dropped, intern)
        out[qid] = (image_id, tuple(kept), tuple(sorted(dropped.items())) or None, "")
    return out


class Official:
    """Streams official question files (with their annotations) as items."""

    def __init__(self, questions: list[tuple[str, Path]], annotations: dict[str, Path], counts: Counter,
                 ignored: Counter):
        self.questions, self.annotations, self.counts, self.ignored = questions, annotations, counts, ignored

    def __iter__(self) -> Iterator[fc.Item | fc.Skip]:
        for sub, path in self.questions:
            split, folder = SUBTYPES[sub]
            anns = load_annotations(self.annotations[sub], self.ignored) if sub in self.annotations else None
            used: set[int] = set()
            what = "a VQA questions file (v2_OpenEnded_mscoco_<split>_questions.json)"
            for index, q in enumerate(_array(path, "questions", what)):
                self.counts["records"] += 1
                yield self.item(split, folder, f"{path.name}[{index}]", q, anns, used)
            if anns is not None:
                self.ignored["annotation_without_question"] += len(anns.keys() - used)

    @staticmethod
    def item(split: str, folder: str, where: str, q: Any, anns: dict | None, used: set[int]) -> fc.Item | fc.Skip:
        if not isinstance(q, dict):
            return fc.Skip("bad_record", where, f"not an object: {type(q).__name__}")
        qid, image_id, question = fc.as_id(q.get("question_id")), fc.as_id(q.get("image_id")), q.get("question")
        if fc.is_int(qid):
            used.add(qid)  # its annotation is not an orphan, whatever becomes of the question
        if not fc.is_int(qid) or not fc.is_int(image_id) or not isinstance(question, str):
            return fc.Skip("bad_record", where, f"question_id {q.get('question_id')!r}, image_id "
                                                f"{q.get('image_id')!r}, question {type(question).__name__}")
        key = f"question {qid}"
        if not question.strip():
            return fc.Skip("no_text", key, "empty question")
        answers: list[str] = []
        dropped: Counter = Counter()
        if anns is not None:
            ann = anns.get(qid)
            if ann is None:
                return fc.Skip("no_annotation", key, "no annotation has this question_id")
            ann_image, kept, ann_dropped, problem = ann
            if kept is None:
                return fc.Skip("bad_annotation", key, problem)
            dropped.update(dict(ann_dropped or ()))
            if ann_image != image_id:
                return fc.Skip("annotation_mismatch", key, f"the question is on image {image_id}, its annotation "
                                                           f"on image {ann_image}", dict(dropped))
            if not kept:
                return fc.Skip("no_answer", key, "the annotation has no non-empty answer", dict(dropped))
            answers = list(kept)
        group = "test_dev:" if split == "test_dev" else ""
        return _line(split, key, f"{group}vqa/{qid}", f"coco/{image_id}", coco_images(image_id, folder), qid,
                     question.strip(), answers, "vqa", dropped)


# ----------------------------------------------------------------------------------------------- Visual Genome
class VisualGenome:
    """Streams Visual Genome's ``question_answers.json`` as items (split ``train``)."""

    def __init__(self, path: Path, places: _Places, counts: Counter):
        self.path, self.places, self.counts = path, places, counts

    def __iter__(self) -> Iterator[fc.Item | fc.Skip]:
        name = self.path.name
        for index, entry in enumerate(fc.guarded(iter_array(self.path), self.path)):
            where = f"{name}[{index}]"
            qas = entry.get("qas") if isinstance(entry, dict) else None
            if not isinstance(qas, list):
                self.counts["records"] += 1
                yield fc.Skip("bad_record", where, "not an image entry with a 'qas' list")
                continue
            entry_image = fc.as_id(entry.get("id", entry.get("image_id")))
            for k, qa in enumerate(qas):
                self.counts["records"] += 1
                yield self.item(f"{where}.qas[{k}]", qa, entry_image)

    def item(self, where: str, qa: Any, entry_image: Any) -> fc.Item | fc.Skip:
        if not isinstance(qa, dict):
            return fc.Skip("bad_record", where, f"not an object: {type(qa).__name__}")
        qid, question, answer = fc.as_id(qa.get("qa_id")), qa.get("question"), qa.get("answer")
        image_id = fc.as_id(qa.get("image_id", entry_image))
        if not fc.is_int(qid) or not fc.is_int(image_id) or not isinstance(question, str) \
                or not isinstance(answer, str):
            return fc.Skip("bad_record", where, f"qa_id {qa.get('qa_id')!r}, image_id {qa.get('image_id')!r}, "
                                                f"question {type(question).__name__}, answer {type(answer).__name__}")
        key = f"vg qa {qid}"
        if fc.is_int(entry_image) and entry_image != image_id:
            return fc.Skip("annotation_mismatch", key, f"in the entry of image {entry_image} but on image {image_id}")
        if not question.strip():
            return fc.Skip("no_text", key, "empty question")
        if not answer.strip():
            return fc.Skip("no_answer", key, "empty answer")
        images = self.places.vg([f"{d}/{image_id}.jpg" for d in ("VG_100K", "VG_100K_2")] + [f"{image_id}.jpg"])
        return _line("train", key, f"vg/{qid}", f"vg/{image_id}", images, qid, question.strip(), [answer.strip()],
                     "vg", Counter())


# ----------------------------------------------------------------------------------------------- X-VLM release
def xvlm_split(path: Path) -> str:
    """The split of an X-VLM file from its name: ``vqa_train`` / ``vg_qa`` -> train, ``vqa_val`` -> val,
    ``vqa_test`` -> test (``test_dev`` / ``testdev`` -> test_dev)."""
    stem = path.stem.lower()
    for marks, split in ((("test_dev", "testdev", "test-dev"), "test_dev"), (("test",), "test"),
                         (("train", "vg"), "train"), (("val",), "val")):
        if any(m in stem for m in marks):
            return split
    raise ConvertError(f"cannot tell the split of {path} from its name: give it as --xvlm SPLIT={path}")


def parse_xvlm(values: list[str]) -> list[tuple[str, Path]]:
    out = []
    for value in values:
        named = _NAMED.match(value)
        if named and not Path(value).is_file():
            name, file = named.groups()
            out.append((name, fc.require_file(file, f"--xvlm {name}=")))
        else:
            path = fc.require_file(value, "--xvlm")
            out.append((xvlm_split(path), path))
    return out


def _xvlm_image_id(dataset: str, image: str) -> str:
    if dataset == "vqa":
        by_name = fc.image_id_from_name("coco", image)
        if by_name:
            return by_name
    else:
        stem = PurePosixPath(image.replace("\\", "/")).name.rsplit(".", 1)[0]
        if stem.isdigit():
            return f"vg/{int(stem)}"
    return f"{dataset}/{image}"


class XVLM:
    """Streams the X-VLM release's VQA files as items."""

    def __init__(self, files: list[tuple[str, Path]], places: _Places, counts: Counter):
        self.files, self.places, self.counts = files, places, counts
        self.unnumbered = 0  # entries without a question_id so far: they get -1, -2, ...

    def __iter__(self) -> Iterator[fc.Item | fc.Skip]:
        for split, path in self.files:
            for index, entry in enumerate(fc.guarded(iter_array(path), path)):
                self.counts["records"] += 1
                yield self.item(split, f"{path.name}[{index}]", entry)

    def item(self, split: str, where: str, entry: Any) -> fc.Item | fc.Skip:
        if not isinstance(entry, dict):
            return fc.Skip("bad_record", where, f"not an object: {type(entry).__name__}")
        question, image, dataset = entry.get("question"), entry.get("image"), entry.get("dataset", "vqa")
        qid = fc.as_id(entry.get("question_id"))
        if not isinstance(question, str) or not isinstance(image, str) or not image.strip() \
                or (qid is not None and not fc.is_int(qid)) or (split in TESTS and qid is None):
            return fc.Skip("bad_record", where, f"question {type(question).__name__}, image {image!r}, "
                                                f"question_id {entry.get('question_id')!r}")
        if dataset not in ("vqa", "vg"):
            return fc.Skip("unknown_dataset", where, f"dataset {dataset!r} (vqa or vg)")
        key = where if qid is None else (f"question {qid}" if dataset == "vqa" else f"vg qa {qid}")
        if not question.strip():
            return fc.Skip("no_text", key, "empty question")
        raw = entry.get("answer", [])
        if raw is None:
            raw = []
        if not isinstance(raw, list | str):
            return fc.Skip("bad_record", key, f"answer is {type(raw).__name__}, not a list or a string")
        dropped: Counter = Counter()
        answers = answers_of([raw] if isinstance(raw, str) else raw, dropped)
        if not answers and split not in TESTS:
            return fc.Skip("no_answer", key, "no non-empty answer", dict(dropped))
        image = image.strip()
        if dataset == "vqa":
            images = fc.candidates(image, COCO_SUBDIRS)
        else:
            images = self.places.vg(fc.candidates(image, VG_SUBDIRS[:2]))
        group = "test_dev:" if split == "test_dev" else ""
        unique = f"{group}{dataset}/{qid}" if qid is not None else f"{split}:{where}"
        if qid is None:  # X-VLM's vg_qa.json entries carry no id; the lines need an int one
            self.unnumbered += 1
            qid = -self.unnumbered
        return _line(split, key, unique, _xvlm_image_id(dataset, image), images, qid, question.strip(), answers,
                     dataset, dropped)


# ----------------------------------------------------------------------------------------------- answer list
def read_answer_list(path: Path) -> tuple[list[str], dict[str, int]]:
    """The candidate answers of ``path`` (a JSON array of strings), stripped, first occurrence kept; what was left
    out, by reason (``bad_answer``, ``empty_answer``, ``duplicate_answer``)."""
    dropped: Counter = Counter()
    kept: dict[str, None] = {}
    for value in fc.guarded(iter_array(path), path):
        if not isinstance(value, str):
            dropped["bad_answer"] += 1
        elif not value.strip():
            dropped["empty_answer"] += 1
        elif value.strip() in kept:
            dropped["duplicate_answer"] += 1
        else:
            kept[value.strip()] = None
    if not kept:
        raise ConvertError(f"--answer-list {path} holds no answer (a JSON array of strings is expected)")
    return list(kept), dict(sorted(dropped.items()))


class AnswerStats:
    """Counts, over the train/val VQA lines written, each question's most common answer (for building the answer
    list and for its coverage)."""

    def __init__(self, given: list[str] | None):
        self.given = set(given) if given is not None else None
        self.modal: Counter = Counter()
        self.vg: Counter = Counter()
        self.questions = self.covered = 0

    def __call__(self, split: str, line: dict[str, Any]) -> None:
        if split in TESTS or not line["answers"]:
            return
        top = Counter(line["answers"]).most_common(1)[0][0]  # ties: the first seen
        if line["dataset"] != "vqa":
            self.vg[top] += 1
            return
        self.modal[top] += 1
        self.questions += 1
        if self.given is not None and top in self.given:
            self.covered += 1


def finish_answers(stats: AnswerStats, given: list[str] | None, given_info: dict[str, Any], num_answers: int):
    def finish(manifest: dict[str, Any]) -> dict[str, str]:
        if given is not None:
            answers, info = given, {"from": "given", **given_info}
            covered = stats.covered
        else:
            counts = stats.modal or stats.vg
            if not counts:
                raise ConvertError("no train/val answer was written to build the answer list from: give "
                                   "--answer-list answer_list.json")
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:num_answers]
            answers = [a for a, _ in ranked]
            covered = sum(n for _, n in ranked) if stats.modal else 0
            info = {"from": "built", "num_answers": num_answers,
                    "counted": "the most common answer of each train/val VQA question" if stats.modal else
                               "the answers of the train/val VG questions (no VQA question had answers)"}
        info["answers"] = len(answers)
        if stats.questions:
            info["coverage"] = round(covered / stats.questions, 4)
            info["coverage_of"] = "train/val VQA questions whose most common answer is in the list"
        manifest["answer_list"] = {"file": ANSWER_LIST, **info}
        return {ANSWER_LIST: json.dumps(answers, ensure_ascii=False) + "\n"}

    return finish


# ----------------------------------------------------------------------------------------------- entry
HINTS = {
    "no_annotation": "the questions have no annotation in --annotations: is it the annotations file of the same "
                     "split (v2_mscoco_<split>_annotations.json)?",
    "annotation_mismatch": "the annotations name other images than the questions: are they the files of the same "
                           "release?",
    "no_answer": "the annotations carry no answers",
    "bad_annotation": "the annotations do not have the published layout (answers: a list of {answer, ...})",
    "unknown_dataset": "the entries' dataset is neither vqa nor vg",
    "no_text": "the questions are empty",
    "bad_record": "the records do not have the published layout (is it the right file for this option?)",
}


def convert_vqa(images: str | Path, out: str | Path, questions: list[str | Path] = (),
                annotations: list[str | Path] = (), vg_qa: str | Path | None = None,
                vg_images: str | Path | None = None, xvlm: list[str] = (), answer_list: str | Path | None = None,
                num_answers: int | None = None, overwrite: bool = False, workers: int = 4,
                progress: bool = True) -> dict[str, Any]:
    """Convert VQA v2 / VG QA / X-VLM VQA files; returns the manifest."""
    root = fc.require_dir(images)
    vg_root = fc.require_dir(vg_images, "--vg-images") if vg_images is not None else root
    if not questions and not xvlm and vg_qa is None:
        raise ConvertError("give --questions (official VQA files), --vg-qa or --xvlm files")
    if answer_list is not None and num_answers is not None:
        raise ConvertError("--answer-list and --num-answers exclude each other (the list is given or built)")
    num_answers = NUM_ANSWERS if num_answers is None else num_answers
    if num_answers < 1:
        raise ConvertError(f"--num-answers {num_answers}: must be at least 1")
    q_files: list[tuple[str, Path]] = []
    for q in questions:
        path = fc.require_file(q, "--questions")
        q_files.append((subtype(path, "questions"), path))
    a_files: dict[str, Path] = {}
    for a in annotations:
        path = fc.require_file(a, "--annotations")
        sub = subtype(path, "annotations")
        if sub in a_files:
            raise ConvertError(f"--annotations: two files for {sub} ({a_files[sub].name}, {path.name})")
        a_files[sub] = path
    subs = [s for s, _ in q_files]
    for sub in subs:
        if subs.count(sub) > 1:
            raise ConvertError(f"--questions: {sub} is given twice")
        if sub in ("train2014", "val2014") and sub not in a_files:
            raise ConvertError(f"--questions {dict(q_files)[sub]} ({sub}) needs its answers: give --annotations "
                               f"v2_mscoco_{sub}_annotations.json")
    for sub in a_files:
        if sub not in subs:
            raise ConvertError(f"--annotations {a_files[sub]} ({sub}) has no --questions file of {sub}")
        if sub not in ("train2014", "val2014"):
            raise ConvertError(f"--annotations {a_files[sub]}: {sub} has no published annotations")
    vg_path = fc.require_file(vg_qa, "--vg-qa") if vg_qa is not None else None
    x_files = parse_xvlm(list(xvlm))
    given = given_dropped = None
    list_path = fc.require_file(answer_list, "--answer-list") if answer_list is not None else None

    split_names = {SUBTYPES[s][0] for s in subs} | {s for s, _ in x_files} | ({"train"} if vg_path else set())
    splits = [s for s in SPLIT_ORDER if s in split_names] + sorted(split_names - set(SPLIT_ORDER))
    args: dict[str, Any] = {}
    if q_files:
        args["questions"] = [p.name for _, p in q_files]
        args["annotations"] = [a_files[s].name for s in subs if s in a_files]
    if vg_path is not None:
        args["vg_qa"] = vg_path.name
    if x_files:
        args["xvlm"] = [[s, p.name] for s, p in x_files]
    if vg_images is not None:
        args["vg_images"] = str(vg_root.resolve())
    args["answer_list"] = list_path.name if list_path else None
    args["num_answers"] = None if list_path else num_answers
    source = "vqa_v2" if q_files or vg_path else "xvlm_vqa"
    spec = fc.Spec(task="vqa", source=source, out=Path(out), image_root=root, splits=splits, args=args,
                   overwrite=overwrite, workers=workers, progress=progress, hints=HINTS)
    fc.check_out(spec)
    if list_path is not None:
        given, given_dropped = read_answer_list(list_path)
    counts, ignored = Counter(), Counter()
    places = _Places(root, vg_root)

    def items() -> Iterator[fc.Item | fc.Skip]:
        yield from Official(q_files, a_files, counts, ignored)
        if vg_path is not None:
            yield from VisualGenome(vg_path, places, counts)
        yield from XVLM(x_files, places, counts)

    stats = AnswerStats(given)
    info = {"input": list_path.name, "dropped": given_dropped} if list_path else {}
    return fc.write(items(), spec, input_records=lambda: counts["records"], ignored=lambda: dict(ignored),
                    on_line=stats, finish=finish_answers(stats, given, info, num_answers))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep.vqa", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--questions", action="append", default=[], type=Path, metavar="FILE",
                        help="an official v2_OpenEnded_mscoco_<split>_questions.json (repeat per split)")
    parser.add_argument("--annotations", action="append", default=[], type=Path, metavar="FILE",
                        help="an official v2_mscoco_<split>_annotations.json (train2014, val2014)")
    parser.add_argument("--vg-qa", type=Path, help="Visual Genome question_answers.json (into train, weight 0.5)")
    parser.add_argument("--xvlm", action="append", default=[], metavar="[SPLIT=]FILE",
                        help="an X-VLM release file (vqa_train.json, vqa_val.json, vg_qa.json, vqa_test.json)")
    parser.add_argument("--images", required=True, type=Path,
                        help="COCO image root (holding train2014/, val2014/, test2015/)")
    parser.add_argument("--vg-images", type=Path,
                        help="Visual Genome image root (holding VG_100K/, VG_100K_2/; default: --images)")
    parser.add_argument("--answer-list", type=Path, help="the candidate answers (X-VLM's answer_list.json)")
    parser.add_argument("--num-answers", type=int,
                        help=f"without --answer-list: build the list of this many answers (default {NUM_ANSWERS})")
    fc.add_common_args(parser)
    return parser


def _convert(a: argparse.Namespace) -> dict[str, Any]:
    return convert_vqa(a.images, a.out, a.questions, a.annotations, a.vg_qa, a.vg_images, a.xvlm, a.answer_list,
                       a.num_answers, a.overwrite, a.workers, not a.no_progress)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep.vqa``."""
    return fc.cli(build_parser(), _convert, argv)


if __name__ == "__main__":
    raise SystemExit(main())
