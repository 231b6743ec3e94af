"""VQA v2 accuracy as the official evaluation toolkit (``vqaEval.py`` of GT-Vision-Lab/VQA) computes it.

Normalisation (:func:`normalize_answer`): ``'\\n'`` and ``'\\t'`` become spaces, then strip, then
:func:`process_punctuation`, then :func:`process_digit_article` (lowercase, number words to digits, articles
dropped, contraction spellings restored).

Scoring (:func:`vqa_accuracy`), per question with its (usually 10) human answers:

* the prediction is always normalised as above;
* the human answers are compared *as given* (not even stripped), except when they are not all identical, in which
  case :func:`process_punctuation` alone is applied to them. The toolkit does not lowercase them nor map number words
  or articles: it relies on the released annotations' answers being normalised already (VQA v2's are). So a human
  "two" never matches (the prediction "two" becomes "2"), exactly as on the evaluation server;
* for each human i: ``acc_i = min(1, #(other humans whose answer equals the prediction) / 3)``; the question's
  accuracy is the mean of the ``acc_i``.

Two quirks of the toolkit are reproduced on purpose: its period pattern ``(?!<=\\d)(\\.)(?!\\d)`` starts with a
negative *lookahead* (a typo for a lookbehind), so it removes every '.' not followed by a digit; and it passes
``re.UNICODE`` (32) where ``re.sub`` expects ``count``, so at most 32 periods are removed.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torchmetrics import Metric

#: contraction spellings without apostrophe -> the spelling of the annotations (the toolkit's map, verbatim;
#: its capitalised keys can never match because the text is lowercased first)
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}

#: number words -> digits ("none" counts as zero)
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

#: removed or turned into a space by :func:`process_punctuation` (not "'", ":", "." and a few others)
PUNCTUATION: tuple[str, ...] = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
                                ">", "<", "@", "`", ",", "?", "!")

#: the toolkit's patterns, verbatim (see the module docstring for what the period pattern really matches)
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
#: the toolkit passes ``re.UNICODE`` as ``count``
_PERIOD_STRIP_COUNT = int(re.UNICODE)

#: VQA v2's answer types
ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")


def process_punctuation(text: str) -> str:
    """The toolkit's ``processPunctuation``.

    Each mark of :data:`PUNCTUATION` is deleted where it touches a space in ``text`` (``"p "`` or ``" p"`` occurs)
    or where ``text`` holds a digit-comma-digit group anywhere, and turned into a space otherwise (both decided
    on the input, applied to the running output); then periods not followed by a digit are deleted.
    """
    has_digit_comma = COMMA_STRIP.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        touches_space = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if touches_space or has_digit_comma else " ")
    return PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """The toolkit's ``processDigitArticle``: lowercase, split on whitespace, number words to digits, drop
    articles, restore contractions (``"dont"`` -> ``"don't"``), join with single spaces."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(answer: str) -> str:
    """A predicted answer as the toolkit normalises it before matching."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def reference_answers(answers: Sequence[str]) -> list[str]:
    """Human answers as the toolkit compares them: unchanged when all identical, else punctuation-processed."""
    if len(set(answers)) > 1:
        return [process_punctuation(a) for a in answers]
    return list(answers)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy in [0, 1] of ``prediction`` against the human ``answers`` (10 in VQA v2).

    Mean over humans i of ``min(1, #(humans j != i answering the normalised prediction) / 3)``.
    """
    if isinstance(answers, str) or len(answers) == 0:
        raise ValueError(f"answers must be a non-empty list of strings, got {answers!r}")
    pred = normalize_answer(prediction)
    matches = [a == pred for a in reference_answers(answers)]
    total = sum(matches)
    return sum(min(1.0, (total - m) / 3.0) for m in matches) / len(matches)


class VQAAccuracy(Metric):
    """VQA accuracy in percent (the toolkit's ``overall``, unrounded) over all questions seen.

    ``update(predictions [N], answers [N][10], answer_types [N] | None)``; ``compute() -> percent``.
    With ``answer_types`` given at construction, :meth:`compute_by_type` also returns the percent per answer
    type (``update`` must then receive each question's type). States are sums, so their sync is the
    distributed reduction (each question scored on exactly one rank).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, answer_types: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answer_types = tuple(answer_types) if answer_types is not None else ()
        if len(set(self.answer_types)) != len(self.answer_types):
            raise ValueError(f"answer_types {self.answer_types} repeat a type")
        self.add_state("acc_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        n = len(self.answer_types)
        self.add_state("type_acc_sum", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("type_count", torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], answers: Sequence[Sequence[str]],
               answer_types: Sequence[str] | None = None) -> None:
        """Add one question per prediction, with its human answers (and its answer type when tracked)."""
        if len(predictions) != len(answers):
            raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists")
        accs = [vqa_accuracy(p, a) for p, a in zip(predictions, answers, strict=True)]
        self.acc_sum += sum(accs)
        self.count += len(accs)
        if self.answer_types:
            self._update_types(accs, answer_types)

    def _update_types(self, accs: list[float], answer_types: Sequence[str] | None) -> None:
        """Add ``accs`` to the sums of their answer types."""
        if answer_types is None or len(answer_types) != len(accs):
            raise ValueError(f"this metric tracks answer types {self.answer_types}: give one type per question")
        unknown = sorted(set(answer_types) - set(self.answer_types))
        if unknown:
            raise ValueError(f"unknown answer types {unknown}; tracked: {self.answer_types}")
        for acc, kind in zip(accs, answer_types, strict=True):
            i = self.answer_types.index(kind)
            self.type_acc_sum[i] += acc
            self.type_count[i] += 1

    def compute(self) -> float:
        """Accuracy in percent; NaN without any question."""
        return _percent(self.acc_sum, self.count)

    def compute_by_type(self) -> dict[str, float]:
        """``{"overall": percent, <answer type>: percent, ...}`` (NaN for a type without question), synced
        across ranks as :meth:`compute` is."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync,
                               should_unsync=self._should_unsync):
            out = {"overall": _percent(self.acc_sum, self.count)}
            for kind, s, c in zip(self.answer_types, self.type_acc_sum, self.type_count, strict=True):
                out[kind] = _percent(s, c)
        return out


def _percent(acc_sum: torch.Tensor, count: torch.Tensor) -> float:
    """``100 * acc_sum / count``; NaN when ``count`` is 0."""
    n = int(count)
    return 100.0 * float(acc_sum) / n if n else float("nan")


def write_vqa_results(rows: Iterable[Mapping[str, Any] | tuple[int, str]], path: str | Path) -> Path:
    """Write the evaluation server's results file ``[{"question_id": int, "answer": str}, ...]``.

    ``rows`` are mappings with ``"question_id"`` and ``"answer"`` (other keys ignored) or ``(question_id, answer)``
    pairs. A question repeated with the same answer (e.g. a sampler's padding) is written once; repeated with a
    different answer it raises ``ValueError`` (the server takes one answer per question). Rows are written sorted by
    question id. Returns the path.
    """
    by_id: dict[int, str] = {}
    for row in rows:
        qid, answer = _result_row(row)
        if by_id.setdefault(qid, answer) != answer:
            raise ValueError(f"question {qid} has two different answers: {by_id[qid]!r} and {answer!r}")
    results = [{"question_id": q, "answer": by_id[q]} for q in sorted(by_id)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results), encoding="utf-8")
    return path


def _result_row(row: Mapping[str, Any] | tuple[int, str]) -> tuple[int, str]:
    """``(question_id, answer)`` of one row, type-checked: an integer id (a one-element tensor counts) and a string."""
    qid, answer = (row["question_id"], row["answer"]) if isinstance(row, Mapping) else row
    if isinstance(qid, torch.Tensor) and qid.numel() == 1 and not qid.is_floating_point():
        qid = qid.item()
    if isinstance(qid, bool) or not isinstance(qid, numbers.Integral):
        raise ValueError(f"question_id must be an integer, got {qid!r}")
    if not isinstance(answer, str):
        raise ValueError(f"answer must be a string, got {answer!r} (question {qid})")
    return int(qid), answer
