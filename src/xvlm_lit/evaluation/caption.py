"""COCO captioning scores with pycocoevalcap's scorers, as ``COCOEvalCap.evaluate`` computes them.

:func:`caption_scores` tokenises references and generated captions with pycocoevalcap's ``PTBTokenizer`` (Stanford
CoreNLP through Java, lowercased, PTB punctuation tokens removed), then runs ``Bleu(4)``, ``Meteor``, ``Rouge``,
``Cider`` and ``Spice`` one by one on the tokenised text. Values are returned as pycocoevalcap reports them
(fractions: the paper's BLEU-4 39.8 is 0.398 here), under COCO's names ``Bleu_1`` .. ``Bleu_4``, ``METEOR``,
``ROUGE_L``, ``CIDEr``, ``SPICE``.

Nothing is downloaded and nothing crashes for want of Java:

* without ``java`` on ``PATH`` the text is tokenised by :func:`simple_tokenize` (an approximation of the PTB
  tokenizer, documented there) and ``METEOR`` and ``SPICE`` are skipped;
* ``SPICE`` also needs its jar and the Stanford CoreNLP 3.6.0 jars in pycocoevalcap's ``spice/lib`` (pycocoevalcap
  downloads those on first use; here a missing file skips SPICE instead).

The result says what happened: ``result["tokenizer"]`` is ``"ptb"`` or ``"simple"`` and ``result["skipped"]`` maps
each skipped metric (and a tokenizer fallback, under ``"PTBTokenizer"``) to its reason.

:class:`CaptionScores` gathers ``(image_id, caption)`` pairs from every rank and scores them once.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

#: COCO's metric names, in the order ``COCOEvalCap`` computes them
METRICS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")

#: PTBTokenizer's tokens removed after tokenisation (pycocoevalcap's ``PUNCTUATIONS``)
PTB_PUNCTUATIONS: frozenset[str] = frozenset(
    {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"})

#: what the files SPICE needs are called inside pycocoevalcap's ``spice`` folder
SPICE_FILES: tuple[str, ...] = ("spice-1.0.jar", "lib/stanford-corenlp-3.6.0.jar",
                                "lib/stanford-corenlp-3.6.0-models.jar")

NO_JAVA = "java is not on PATH"

#: the scorers that run a JVM: a failure of theirs is reported under ``skipped``, not raised
JAVA_SCORERS: frozenset[str] = frozenset({"METEOR", "SPICE"})

_BRACKETS = {"(": " -lrb- ", ")": " -rrb- ", "[": " -lsb- ", "]": " -rsb- ", "{": " -lcb- ", "}": " -rcb- "}
_CLITIC = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_LONE_COMMA = re.compile(r"(?<!\d),|,(?!\d)")
_KEEP = re.compile(r"^(n't|'s|'re|'ve|'ll|'d|'m|-l[rsc]b-|-r[rsc]b-)$")
_EDGE_MARKS = "'\"`.?!:;,-"


def simple_tokenize(caption: str) -> str:
    """A Java-free approximation of ``PTBTokenizer -preserveLines -lowerCase`` followed by the removal of
    :data:`PTB_PUNCTUATIONS`, for when Java is missing.

    Lowercase; newlines to spaces; brackets become PTB's lowercased tokens (``(`` -> ``-lrb-``, which the lowercase
    output keeps, as pycocoevalcap does); clitics split off (``don't`` -> ``do n't``, ``dog's`` -> ``dog 's``);
    commas not inside a number separate words; quotes, periods, ``?!:;,-`` are peeled off both ends of every
    other word; empty words dropped. It equals the PTB output on ordinary captions (words, sentence punctuation,
    quotes, hyphenated words, decimals); it differs on abbreviations with a final period (``co.``), currency signs
    and other rare constructs.
    """
    text = caption.replace("\n", " ").lower()
    for bracket, token in _BRACKETS.items():
        text = text.replace(bracket, token)
    text = _LONE_COMMA.sub(" ", _CLITIC.sub(r" \1", text))
    words = (w if _KEEP.match(w) else w.strip(_EDGE_MARKS) for w in text.split())
    return " ".join(w for w in words if w and w not in PTB_PUNCTUATIONS)


def java_available() -> bool:
    """Whether a ``java`` executable is on ``PATH``."""
    return shutil.which("java") is not None


def _pycocoevalcap_dir() -> Path:
    """The installed pycocoevalcap package folder (a namespace package: no ``__file__``)."""
    try:
        import pycocoevalcap
    except ImportError as err:  # pragma: no cover - a dev dependency
        raise ImportError("caption scores need pycocoevalcap: pip install 'pycocoevalcap>=1.2'") from err
    return Path(next(iter(pycocoevalcap.__path__)))


def spice_missing_files(spice_dir: Path | None = None) -> list[str]:
    """The files of :data:`SPICE_FILES` absent from ``spice_dir`` (pycocoevalcap's ``spice`` folder by default)."""
    spice_dir = _pycocoevalcap_dir() / "spice" if spice_dir is None else Path(spice_dir)
    return [name for name in SPICE_FILES if not (spice_dir / name).is_file()]


def _check_inputs(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], require_all: bool) -> None:
    """Raise ``ValueError`` on results outside the references, missing results, or empty reference lists."""
    if not res:
        raise ValueError("no generated caption to score")
    extra = [k for k in res if k not in gts]
    if extra:
        raise ValueError(f"{len(extra)} image ids have a caption but no reference (first: {extra[:5]})")
    missing = [k for k in gts if k not in res]
    if require_all and missing:
        raise ValueError(f"{len(missing)} images have references but no generated caption (first: {missing[:5]}); "
                         "pass require_all=False to score only the captioned images, as COCO does with "
                         "params['image_id'] = cocoRes.getImgIds()")
    for k in res:
        if isinstance(gts[k], str) or not gts[k]:
            raise ValueError(f"image {k!r}: the references must be a non-empty list of strings")
        if not isinstance(res[k], str):
            raise ValueError(f"image {k!r}: the generated caption must be one string, got {res[k]!r}")


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """pycocoevalcap's ``PTBTokenizer().tokenize`` on ``{key: [caption, ...]}`` (Java required); raises
    ``RuntimeError`` when its output does not have one line per caption (e.g. Java failed).

    ``'\r'`` becomes a space first, as pycocoevalcap does with ``'\n'``: Java would read it as a line end and
    shift every later caption onto the wrong key.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    coco = {k: [{"caption": c.replace("\r", " ")} for c in caps] for k, caps in captions.items()}
    out = PTBTokenizer().tokenize(coco)
    bad = [k for k, caps in captions.items() if len(out.get(k, ())) != len(caps)]
    if bad:
        raise RuntimeError(f"PTBTokenizer returned no or too few lines for {len(bad)} keys (first: {bad[:3]})")
    return out


def tokenize_for_scoring(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], use_java: bool,
                         no_java: str = NO_JAVA) -> tuple[dict, dict, str, str | None]:
    """``(gts_tok {id: [ref, ...]}, res_tok {id: [caption]}, tokenizer name, fallback reason or None)`` over the
    images of ``res``. References and captions go through one PTBTokenizer run (each line is tokenised alone, so
    this equals COCO's two runs). ``no_java`` says why Java is not used when ``use_java`` is False."""
    ids = list(res)
    reason = None
    if use_java:
        joined: dict[Hashable, Sequence[str]] = {("gts", k): list(gts[k]) for k in ids}
        joined.update({("res", k): [res[k]] for k in ids})
        try:
            tok = ptb_tokenize(joined)
            return ({k: tok[("gts", k)] for k in ids}, {k: tok[("res", k)] for k in ids}, "ptb", None)
        except (OSError, RuntimeError) as err:
            reason = f"PTBTokenizer failed ({err}); used simple_tokenize instead"
    else:
        reason = f"{no_java}: PTBTokenizer (Stanford CoreNLP) cannot run; used simple_tokenize instead"
    gts_tok = {k: [simple_tokenize(c) for c in gts[k]] for k in ids}
    res_tok = {k: [simple_tokenize(res[k])] for k in ids}
    return gts_tok, res_tok, "simple", reason


def _scorers(use_java: bool, spice: bool, skipped: dict[str, str], no_java: str = NO_JAVA,
             ) -> list[tuple[str, Any, list[str]]]:
    """``(name, scorer factory, metric names)`` of the scorers to run; records the skipped ones, with the reason,
    in ``skipped`` (``no_java``: why Java is not used)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    run: list[tuple[str, Any, list[str]]] = [("Bleu", lambda: Bleu(4), list(METRICS[:4]))]
    if use_java:
        from pycocoevalcap.meteor.meteor import Meteor
        run.append(("METEOR", Meteor, ["METEOR"]))
    else:
        skipped["METEOR"] = f"{no_java}: the METEOR 1.5 jar cannot run"
    run += [("ROUGE_L", Rouge, ["ROUGE_L"]), ("CIDEr", Cider, ["CIDEr"])]
    reasons = _spice_problems(use_java, no_java) if spice else ["disabled (spice=False)"]
    if reasons:
        skipped["SPICE"] = "; ".join(reasons)
    else:
        from pycocoevalcap.spice.spice import Spice
        run.append(("SPICE", Spice, ["SPICE"]))
    return run


def _spice_problems(use_java: bool, no_java: str) -> list[str]:
    """Why SPICE cannot run here (empty when it can): no Java, missing jars."""
    problems = [] if use_java else [f"{no_java}: the SPICE jar cannot run"]
    missing = spice_missing_files()
    if missing:
        problems.append(f"missing {', '.join(missing)} under pycocoevalcap/spice (pycocoevalcap would download "
                        "Stanford CoreNLP 3.6.0 on first use; this project never downloads it)")
    return problems


def _run_scorer(factory: Any, names: list[str], gts_tok: dict, res_tok: dict) -> dict[str, float]:
    """Run one scorer on the tokenised text: ``{metric name: corpus score}``; the Java ones raise ``OSError``,
    ``ValueError`` or ``subprocess.SubprocessError`` when their JVM fails."""
    scorer = factory()
    try:
        kwargs = {"verbose": 0} if names[0] == "Bleu_1" else {}
        score, _ = scorer.compute_score(gts_tok, res_tok, **kwargs)
    finally:
        del scorer  # METEOR: its __del__ ends the Java process now
    scores = score if isinstance(score, list | tuple) else [score]
    return {n: float(s) for n, s in zip(names, scores, strict=True)}


def caption_scores(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], *, spice: bool = True,
                   java: bool | None = None, require_all: bool = True) -> dict[str, Any]:
    """COCO caption metrics of the generated captions ``res {image_id: caption}`` against the references
    ``gts {image_id: [caption, ...]}``.

    Args:
        spice: run SPICE where possible (slow: a JVM of up to 8 GB).
        java: use Java (PTBTokenizer, METEOR, SPICE); ``None`` detects ``java`` on ``PATH``.
        require_all: every image of ``gts`` must have a caption; with False only the captioned images are scored.

    Returns:
        ``{metric: score for each computed metric of METRICS, "tokenizer": "ptb" | "simple",
        "skipped": {metric or "PTBTokenizer": reason}, "num_images": int}``.
    """
    _pycocoevalcap_dir()
    _check_inputs(gts, res, require_all)
    use_java = java_available() if java is None else bool(java)
    no_java = NO_JAVA if java is None else "Java disabled (java=False)"
    gts_tok, res_tok, tokenizer, reason = tokenize_for_scoring(gts, res, use_java, no_java)
    skipped: dict[str, str] = {} if reason is None else {"PTBTokenizer": reason}
    out: dict[str, Any] = {}
    for name, factory, names in _scorers(use_java, spice, skipped, no_java):
        if name not in JAVA_SCORERS:
            out.update(_run_scorer(factory, names, gts_tok, res_tok))
            continue
        try:
            out.update(_run_scorer(factory, names, gts_tok, res_tok))
        except (OSError, ValueError, subprocess.SubprocessError) as err:
            skipped[name] = f"its Java process failed: {type(err).__name__}: {err}"
    out.update({"tokenizer": tokenizer, "skipped": skipped, "num_images": len(res_tok)})
    return out


def write_caption_results(res: Mapping[Hashable, str], path: str | Path) -> Path:
    """Write COCO's results file ``[{"image_id": ..., "caption": str}, ...]`` sorted by image id; returns the path."""
    rows = [{"image_id": k, "caption": c} for k, c in sorted(res.items(), key=lambda kv: str(kv[0]))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


class CaptionScores:
    """Collects ``(image_id, caption)`` pairs on every rank; :meth:`compute` gathers them from all ranks
    (``all_gather_object`` when a process group is initialised), scores them once on rank 0 with
    :func:`caption_scores` and broadcasts the result, so every rank returns the same dict.

    An image captioned more than once (e.g. a distributed sampler's padding) keeps its first caption in
    rank order, then update order.
    """

    def __init__(self) -> None:
        self._pairs: list[tuple[Hashable, str]] = []

    def reset(self) -> None:
        """Forget every caption of this rank."""
        self._pairs = []

    def update(self, image_ids: Iterable[Hashable], captions: Iterable[str]) -> None:
        """Add one generated caption per image id (tensor ids become Python numbers)."""
        ids, caps = list(image_ids), list(captions)
        if len(ids) != len(caps):
            raise ValueError(f"{len(ids)} image ids but {len(caps)} captions")
        for k, c in zip(ids, caps, strict=True):
            if not isinstance(c, str):
                raise ValueError(f"image {k!r}: a caption must be a string, got {c!r}")
            self._pairs.append((k.item() if hasattr(k, "item") else k, c))

    def gather(self) -> dict[Hashable, str]:
        """``{image_id: caption}`` over all ranks (this rank's alone without a process group)."""
        per_rank = [self._pairs]
        if dist.is_available() and dist.is_initialized():
            per_rank = [None] * dist.get_world_size()
            dist.all_gather_object(per_rank, self._pairs)
        merged: dict[Hashable, str] = {}
        for pairs in per_rank:
            for k, c in pairs:
                merged.setdefault(k, c)
        return merged

    def compute(self, gts: Mapping[Hashable, Sequence[str]], **kwargs: Any) -> dict[str, Any]:
        """:func:`caption_scores` of the gathered captions against ``gts`` (``kwargs`` passed on), computed on
        rank 0 only and identical on every rank. An error on rank 0 is raised on every rank."""
        res = self.gather()
        if not (dist.is_available() and dist.is_initialized()):
            return caption_scores(gts, res, **kwargs)
        box: list[Any] = [None]
        error: Exception | None = None
        if dist.get_rank() == 0:
            try:
                box[0] = ("ok", caption_scores(gts, res, **kwargs))
            except Exception as err:  # re-raised on every rank below, after the broadcast the others wait for
                error, box[0] = err, ("error", f"{type(err).__name__}: {err}")
        dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if error is not None:
            raise error
        if status == "error":
            raise RuntimeError(f"caption scoring failed on rank 0: {value}")
        return value
