"""VQA accuracy against hand computations of the official leave-one-out rule, the toolkit's answer normalisation
case by case (articles, punctuation, number words, contractions and its documented quirks), the Metric's sums
(several updates, merged shards, per answer type) and the evaluation server's results file."""

import itertools
import json
import math
import random

import pytest
import torch

from xvlm_lit.evaluation.vqa import (
    ANSWER_TYPES,
    VQAAccuracy,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    reference_answers,
    vqa_accuracy,
    write_vqa_results,
)


# ------------------------------------------------------------------------------------------ leave-one-out
@pytest.mark.parametrize(("matching", "expected"), [
    (0, 0.0),
    # the 1 matching human sees 0 others -> 0; the 9 others see 1 -> 1/3: 9/3/10
    (1, 0.3),
    # 2 matching humans see 1 other -> 1/3; 8 others see 2 -> 2/3: (2/3 + 16/3) / 10
    (2, 0.6),
    # 3 matching see 2 -> 2/3; 7 others see 3 -> 1: (2 + 7) / 10
    (3, 0.9),
    # 4 matching see 3 -> 1; 6 others see 4 -> 1
    (4, 1.0),
    (10, 1.0),
])
def test_leave_one_out_by_hand(matching, expected):
    answers = ["2"] * matching + ["3"] * (10 - matching)
    assert vqa_accuracy("two", answers) == pytest.approx(expected, abs=1e-12)  # "two" normalises to "2"


def brute_force_accuracy(prediction: str, answers: list[str]) -> float:
    """The rule written literally: mean over the 10 subsets of 9 humans of min(1, #matches in the subset / 3)."""
    refs = reference_answers(answers)
    pred = normalize_answer(prediction)
    subsets = list(itertools.combinations(range(len(refs)), len(refs) - 1))
    return sum(min(1.0, sum(refs[i] == pred for i in s) / 3) for s in subsets) / len(subsets)


def test_random_questions_equal_the_literal_subset_rule():
    rng = random.Random(0)
    vocab = ["yes", "no", "2", "3", "red", "blue car"]
    for _ in range(200):
        answers = [rng.choice(vocab) for _ in range(10)]
        prediction = rng.choice(vocab + ["green"])
        assert vqa_accuracy(prediction, answers) == pytest.approx(brute_force_accuracy(prediction, answers))


def test_rejects_no_answers():
    with pytest.raises(ValueError, match="non-empty"):
        vqa_accuracy("yes", [])
    with pytest.raises(ValueError, match="non-empty"):
        vqa_accuracy("yes", "yes")  # a string is not a list of answers


# ------------------------------------------------------------------------------------------ normalisation
@pytest.mark.parametrize(("raw", "expected"), [
    ("the dog", "dog"),
    ("A Dog", "dog"),
    ("an apple", "apple"),
    ("theater", "theater"),              # only whole words are articles
    ("Two", "2"),
    ("none", "0"),
    ("ten", "10"),
    ("eleven", "eleven"),                # the map stops at ten
    ("dont", "don't"),
    ("isnt it", "isn't it"),
    ("Im", "im"),                        # lowercased first: the toolkit's key "Im" never matches
    ("yes.", "yes"),
    ("mr. smith", "mr smith"),
    ("2.5", "2.5"),                      # a period followed by a digit stays
    ("5.", "5"),                         # the period pattern's lookahead typo: a digit before does not protect it
    ("hello,world", "hello world"),      # a mark not touching a space becomes a space
    ("hello, world", "hello world"),     # ... and is deleted where it touches one
    ("1,000", "1000"),                   # a digit-comma-digit group deletes every mark
    ("t-shirt", "t shirt"),
    ("what?!", "what"),
    ("  red\tand\nblue ", "red and blue"),
    ("12:30", "12:30"),                  # ':' is not a mark of the toolkit
    ("(yes)", "yes"),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_contraction_keys_with_capitals_never_match():
    # the toolkit's map has "Im" -> "I'm", but the words are lowercased before the look-up
    assert process_digit_article("Im") == "im"


def test_marks_are_decided_on_the_input_but_applied_to_the_output():
    # "-" touches a space somewhere, so every "-" is deleted, also the one inside "t-shirt"
    assert process_punctuation("t-shirt - red") == "tshirt  red"
    assert process_punctuation("t-shirt") == "t shirt"


def test_period_strip_removes_at_most_32_periods():
    # the toolkit passes re.UNICODE (32) where re.sub expects count
    assert process_punctuation("a" + "." * 40) == "a" + "." * 8


def test_human_answers_only_punctuation_processed_and_only_when_they_differ():
    # all 10 identical: compared raw, so "yes." never equals the normalised prediction "yes"
    assert vqa_accuracy("yes", ["yes."] * 10) == 0.0
    # not all identical: punctuation processed, "yes." -> "yes"; 9 humans match
    assert vqa_accuracy("yes", ["yes."] * 9 + ["no"]) == 1.0
    # but never lowercased nor number-mapped: "Yes" and "two" do not match the prediction
    assert vqa_accuracy("yes", ["Yes"] * 5 + ["no"] * 5) == 0.0
    assert vqa_accuracy("two", ["two"] * 5 + ["3"] * 5) == 0.0
    assert reference_answers(["a.b", "c"]) == ["ab", "c"]
    assert reference_answers(["a.b"] * 3) == ["a.b"] * 3


def test_the_prediction_is_always_normalised():
    assert vqa_accuracy(" The Two.\n", ["2"] * 10) == 1.0


# -------------------------------------------------------------------------------------------------- Metric
QUESTIONS = [
    ("two", ["2"] * 3 + ["3"] * 7, "number"),
    ("yes", ["yes"] * 10, "yes/no"),
    ("no", ["yes"] * 9 + ["no"], "yes/no"),     # 1 match: 9 humans see it once -> 9 * 1/3 / 10
    ("red car", ["red car"] * 2 + ["car"] * 8, "other"),
    ("blue", ["red"] * 10, "other"),
]


def test_metric_over_several_updates_is_the_mean_in_percent():
    metric = VQAAccuracy()
    metric.update([q[0] for q in QUESTIONS[:2]], [q[1] for q in QUESTIONS[:2]])
    metric.update([q[0] for q in QUESTIONS[2:]], [q[1] for q in QUESTIONS[2:]])
    accs = [vqa_accuracy(p, a) for p, a, _ in QUESTIONS]
    assert accs == pytest.approx([0.9, 1.0, 0.3, 0.6, 0.0])
    assert metric.compute() == pytest.approx(100 * sum(accs) / len(accs))
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(metric.compute())


def test_metric_by_answer_type():
    metric = VQAAccuracy(answer_types=ANSWER_TYPES)
    metric.update(*map(list, zip(*QUESTIONS, strict=True)))
    by_type = metric.compute_by_type()
    assert by_type == pytest.approx({"overall": 56.0, "yes/no": 65.0, "number": 90.0, "other": 30.0})
    assert metric.compute() == pytest.approx(56.0)  # (0.9 + 1 + 0.3 + 0.6 + 0) / 5
    empty = VQAAccuracy(answer_types=("yes/no", "number"))
    empty.update(["yes"], [["yes"] * 10], ["yes/no"])
    assert math.isnan(empty.compute_by_type()["number"])


def test_metric_type_errors():
    metric = VQAAccuracy(answer_types=ANSWER_TYPES)
    with pytest.raises(ValueError, match="one type per question"):
        metric.update(["yes"], [["yes"] * 10])
    with pytest.raises(ValueError, match="unknown answer types"):
        metric.update(["yes"], [["yes"] * 10], ["color"])
    with pytest.raises(ValueError, match="answer lists"):
        VQAAccuracy().update(["yes", "no"], [["yes"] * 10])
    with pytest.raises(ValueError, match="repeat"):
        VQAAccuracy(answer_types=("other", "other"))


def test_states_are_sums_so_merged_shards_equal_one_metric():
    """merge_state applies each state's dist_reduce_fx: what the distributed sync computes."""
    preds, answers, types = map(list, zip(*QUESTIONS, strict=True))
    full = VQAAccuracy(answer_types=ANSWER_TYPES)
    full.update(preds, answers, types)
    a, b = VQAAccuracy(answer_types=ANSWER_TYPES), VQAAccuracy(answer_types=ANSWER_TYPES)
    a.update(preds[::2], answers[::2], types[::2])
    b.update(preds[1::2], answers[1::2], types[1::2])
    a.merge_state(b)
    assert a.compute_by_type() == pytest.approx(full.compute_by_type())
    assert int(a.count) == len(QUESTIONS)


# ------------------------------------------------------------------------------------------- results file
def test_write_vqa_results(tmp_path):
    rows = [{"question_id": 7, "answer": "yes"}, (torch.tensor(3), "2"), {"question_id": 5, "answer": "red",
            "extra": 1}, (7, "yes")]  # the repeated (7, "yes") is written once
    path = write_vqa_results(rows, tmp_path / "sub" / "vqa_result.json")
    assert json.loads(path.read_text()) == [{"question_id": 3, "answer": "2"}, {"question_id": 5, "answer": "red"},
                                            {"question_id": 7, "answer": "yes"}]


@pytest.mark.parametrize(("rows", "match"), [
    ([(1, "a"), (1, "b")], "two different answers"),
    ([(1.5, "a")], "integer"),
    ([(True, "a")], "integer"),
    ([(None, "a")], "integer"),
    ([("12", "a")], "integer"),
    ([(1, 2)], "string"),
])
def test_write_vqa_results_rejects(tmp_path, rows, match):
    with pytest.raises(ValueError, match=match):
        write_vqa_results(rows, tmp_path / "r.json")
