"""Caption scores equal pycocoevalcap's own scorers called directly on the same tokenised input (with Java:
PTBTokenizer, BLEU, METEOR, ROUGE-L, CIDEr; without: the simple tokenizer and the scorers that need no Java);
skipped scorers (no Java, SPICE's missing jars) are reported, never crashed on and never downloaded; the Java-free
tokenizer equals PTBTokenizer's output on ordinary captions; 2 gloo ranks gather and score exactly as 1 process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pycocoevalcap")

from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402

import xvlm_lit.evaluation.caption as caption  # noqa: E402
from xvlm_lit.evaluation.caption import (  # noqa: E402
    SPICE_FILES,
    CaptionScores,
    caption_scores,
    java_available,
    ptb_tokenize,
    simple_tokenize,
    spice_missing_files,
    write_caption_results,
)

needs_java = pytest.mark.skipif(not java_available(), reason="java is not on PATH")

GTS = {
    1: ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave in the ocean.",
        "A man on a surfboard riding a wave.", "Surfer riding a wave on his board."],
    2: ["Two dogs playing with a ball in the grass.", "Two dogs run after a red ball.",
        "A pair of dogs chasing a ball on a lawn."],
    3: ["A red double-decker bus driving down the street.", "The bus is red and on a city street.",
        "A red bus on a street next to buildings."],
    "img4": ["A plate of food with broccoli and rice.", "Broccoli, rice and chicken on a white plate."],
}
RES = {1: "A man riding a wave on a surfboard.", 2: "Two dogs playing with a ball.",
       3: "A red bus driving down a city street.", "img4": "A white plate with rice and broccoli."}


def direct_scores(gts_tok: dict, res_tok: dict, meteor=None) -> dict[str, float]:
    """pycocoevalcap's scorers called one by one on already tokenised {id: [str]} dicts, as COCOEvalCap does
    (``meteor``: a pycocoevalcap ``Meteor`` instance, or None to leave METEOR out)."""
    bleu, _ = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
    out = {f"Bleu_{n + 1}": b for n, b in enumerate(bleu)}
    if meteor is not None:
        out["METEOR"] = meteor.compute_score(gts_tok, res_tok)[0]
    out["ROUGE_L"] = Rouge().compute_score(gts_tok, res_tok)[0]
    out["CIDEr"] = Cider().compute_score(gts_tok, res_tok)[0]
    return out


def metric_values(result: dict) -> dict[str, float]:
    return {k: v for k, v in result.items() if k not in ("tokenizer", "skipped", "num_images")}


@pytest.fixture
def no_spice_files(tmp_path, monkeypatch):
    """SPICE's folder is an empty one, and any download attempt fails the test."""
    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    import pycocoevalcap.spice.get_stanford_models as models

    monkeypatch.setattr(models, "urlretrieve", no_download)
    monkeypatch.setattr(caption, "_pycocoevalcap_dir", lambda: tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------------------------ with Java
@pytest.fixture(scope="module")
def java_results():
    """caption_scores with Java (SPICE files hidden) and the direct PTBTokenizer + scorer computation.

    Both sides use one METEOR JVM (its start, loading the paraphrase table, takes seconds; each EVAL request is
    scored on its own): caption_scores constructs pycocoevalcap's Meteor, patched to hand out the shared one.
    """
    import pycocoevalcap.meteor.meteor as meteor_module
    import pycocoevalcap.spice.get_stanford_models as models

    meteor = meteor_module.Meteor()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "urlretrieve", lambda *a, **k: (_ for _ in ()).throw(AssertionError("download")))
        mp.setattr(caption, "_pycocoevalcap_dir", lambda: Path("/nonexistent-pycocoevalcap"))
        mp.setattr(meteor_module, "Meteor", lambda: meteor)
        ours = caption_scores(GTS, RES)
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()  # two runs, as COCOEvalCap.evaluate tokenises gts and res
    gts_tok = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in GTS.items()})
    res_tok = tokenizer.tokenize({k: [{"caption": c}] for k, c in RES.items()})
    return ours, direct_scores(gts_tok, res_tok, meteor), res_tok


@needs_java
def test_scores_equal_pycocoevalcap_scorers_on_ptb_tokens(java_results):
    ours, direct, _ = java_results
    assert ours["tokenizer"] == "ptb" and ours["num_images"] == 4
    assert metric_values(ours) == direct  # exactly: the same scorers on the same tokens
    assert 0 < direct["Bleu_4"] < direct["Bleu_1"] <= 1 and 0 < direct["METEOR"] < 1 and direct["CIDEr"] > 0


@needs_java
def test_spice_without_its_jars_is_skipped_not_downloaded(java_results):
    ours, _, _ = java_results
    assert set(ours["skipped"]) == {"SPICE"} and "SPICE" not in metric_values(ours)
    for name in SPICE_FILES:
        assert name in ours["skipped"]["SPICE"]
    assert "java" not in ours["skipped"]["SPICE"]


@needs_java
def test_ptb_tokens_are_lowercased_without_punctuation(java_results):
    _, _, res_tok = java_results
    assert res_tok[1] == ["a man riding a wave on a surfboard"]


# ------------------------------------------------------------------- Java-free tokenizer vs PTBTokenizer
#: (caption, PTBTokenizer -preserveLines -lowerCase output after pycocoevalcap's punctuation removal)
TOKENIZED = [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("Two dogs' toys, a ball and a stick!", "two dogs toys a ball and a stick"),
    ("A woman's hand holding a cell-phone (black).", "a woman 's hand holding a cell-phone -lrb- black -rrb-"),
    ('there\'s a "red" bus; it isn\'t moving...', "there 's a red bus it is n't moving"),
    ("The price is 2.5 dollars, about 1,000 yen?", "the price is 2.5 dollars about 1,000 yen"),
    ("a t-shirt -- blue: and 'white'", "a t-shirt blue and white"),
    ("A DOG\nwith a hat", "a dog with a hat"),
    ("a carriage\rreturn", "a carriage return"),  # Java would end the line here: later captions stay aligned
    ("I'm sure they'll go, won't they", "i 'm sure they 'll go wo n't they"),
    ("  spaces   everywhere  ", "spaces everywhere"),
    ("", ""),
]


@pytest.mark.parametrize(("raw", "expected"), TOKENIZED)
def test_simple_tokenize(raw, expected):
    assert simple_tokenize(raw) == expected


@needs_java
def test_the_expected_tokens_are_ptbtokenizer_output():
    out = ptb_tokenize({i: [raw] for i, (raw, _) in enumerate(TOKENIZED)})
    assert [out[i][0] for i in range(len(TOKENIZED))] == [expected for _, expected in TOKENIZED]


# --------------------------------------------------------------------------------------------- without Java
def test_without_java_scores_equal_the_scorers_on_simple_tokens(no_spice_files):
    ours = caption_scores(GTS, RES, java=False)
    gts_tok = {k: [simple_tokenize(c) for c in v] for k, v in GTS.items()}
    res_tok = {k: [simple_tokenize(c)] for k, c in RES.items()}
    assert ours["tokenizer"] == "simple"
    assert metric_values(ours) == direct_scores(gts_tok, res_tok)
    assert set(ours["skipped"]) == {"PTBTokenizer", "METEOR", "SPICE"}
    assert "java=False" in ours["skipped"]["METEOR"] and "simple_tokenize" in ours["skipped"]["PTBTokenizer"]
    assert "java=False" in ours["skipped"]["SPICE"] and SPICE_FILES[0] in ours["skipped"]["SPICE"]


def test_java_missing_from_path_is_detected(no_spice_files, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert not java_available()
    ours = caption_scores(GTS, RES, spice=False)
    assert ours["tokenizer"] == "simple" and "METEOR" not in ours
    assert ours["skipped"]["METEOR"].startswith("java is not on PATH")
    assert ours["skipped"]["SPICE"] == "disabled (spice=False)"


def test_captions_equal_to_every_reference_score_one():
    gts = {1: ["a cat on a mat today", "a cat on a mat today"], 2: ["two birds in the blue sky"]}
    res = {1: "A cat on a mat today.", 2: "Two birds in the blue sky"}
    ours = caption_scores(gts, res, java=False, spice=False)
    for name in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L"):
        assert ours[name] == pytest.approx(1.0, abs=1e-6), name


def test_spice_missing_files(tmp_path):
    assert spice_missing_files(tmp_path) == list(SPICE_FILES)
    for name in SPICE_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert spice_missing_files(tmp_path) == []


def test_input_errors():
    with pytest.raises(ValueError, match="no reference"):
        caption_scores({1: ["a"]}, {1: "a", 2: "b"}, java=False)
    with pytest.raises(ValueError, match="require_all=False"):
        caption_scores({1: ["a"], 2: ["b"]}, {1: "a"}, java=False)
    with pytest.raises(ValueError, match="non-empty list"):
        caption_scores({1: "a dog"}, {1: "a dog"}, java=False)
    with pytest.raises(ValueError, match="no generated caption"):
        caption_scores({1: ["a"]}, {}, java=False)


def test_require_all_false_scores_the_captioned_images_only():
    sub = {k: RES[k] for k in (1, 2, 3)}
    partial = caption_scores(GTS, sub, java=False, spice=False, require_all=False)
    alone = caption_scores({k: GTS[k] for k in sub}, sub, java=False, spice=False)
    assert partial == alone and partial["num_images"] == 3


# ------------------------------------------------------------------------------------- accumulator, files
def test_caption_scores_accumulator_one_process():
    acc = CaptionScores()
    acc.update([1, 2], [RES[1], RES[2]])
    acc.update([3, "img4", 1], [RES[3], RES["img4"], "a different caption for image 1"])  # first one kept
    assert acc.gather() == RES
    assert acc.compute(GTS, java=False, spice=False) == caption_scores(GTS, RES, java=False, spice=False)
    with pytest.raises(ValueError, match="2 image ids but 1 captions"):
        acc.update([1, 2], ["x"])
    acc.reset()
    assert acc.gather() == {}


def test_write_caption_results(tmp_path):
    path = write_caption_results({2: "b", 1: "a"}, tmp_path / "out" / "caption_result.json")
    assert json.loads(path.read_text()) == [{"image_id": 1, "caption": "a"}, {"image_id": 2, "caption": "b"}]


WORKER = """
import json, sys
import torch
import torch.distributed as dist
from xvlm_lit.evaluation.caption import CaptionScores

rank, init_file, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
gts, res, shards = json.loads(sys.argv[4])
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
try:
    acc = CaptionScores()
    ids = shards[rank]
    acc.update(torch.tensor(ids), [res[str(i)] for i in ids])
    out = acc.compute({int(k): v for k, v in gts.items()}, java=False, spice=False)
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(out, f)
finally:
    dist.destroy_process_group()
"""


@pytest.mark.xdist_group("distributed")
def test_two_ranks_gather_and_score_as_one_process(tmp_path):
    gts = {i: v for i, v in enumerate(GTS.values())}
    res = {i: c for i, c in enumerate(RES.values())}
    shards = [[0, 2, 3], [1, 0]]  # uneven, with a padding duplicate of image 0 on rank 1
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    payload = json.dumps([gts, res, shards])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "init"), str(tmp_path), payload],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    single = json.loads(json.dumps(caption_scores(gts, res, java=False, spice=False)))
    for r in range(2):
        assert json.loads((tmp_path / f"rank{r}.json").read_text()) == single


def test_failing_java_tools_fall_back_and_are_reported(no_spice_files, monkeypatch):
    """Java found but its tools fail (e.g. a broken JVM): PTB falls back to the simple tokenizer, METEOR is skipped
    with the reason; the Java-free scores are still those of the simple tokens."""
    import pycocoevalcap.meteor.meteor as meteor_module

    class DeadMeteor:
        def compute_score(self, gts, res):
            raise ValueError("could not convert string to float: ''")  # what a dead JVM's empty line gives

    def failing_ptb(captions):
        raise RuntimeError("PTBTokenizer returned no or too few lines")

    monkeypatch.setattr(caption, "ptb_tokenize", failing_ptb)
    monkeypatch.setattr(meteor_module, "Meteor", DeadMeteor)
    ours = caption_scores(GTS, RES, java=True)
    assert ours["tokenizer"] == "simple" and "METEOR" not in ours
    assert "PTBTokenizer failed" in ours["skipped"]["PTBTokenizer"]
    assert ours["skipped"]["METEOR"].startswith("its Java process failed: ValueError")
    assert SPICE_FILES[1] in ours["skipped"]["SPICE"] and "java" not in ours["skipped"]["SPICE"]
    assert metric_values(ours) == metric_values(caption_scores(GTS, RES, java=False))
