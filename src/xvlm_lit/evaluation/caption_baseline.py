"""The trivial captioning baseline: one constant caption for every image, the best of a few candidates.

The candidates are the most frequent training captions; each is scored by CIDEr (pycocoevalcap's ``Cider`` on the
same tokenisation as :func:`xvlm_lit.evaluation.caption.caption_scores`) on the validation references, and the best
one is then scored on every split. A model must beat this to have learned anything image-specific.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

from xvlm_lit.evaluation.caption import java_available, tokenize_for_scoring


def frequent_captions(captions: Sequence[str], n: int = 5) -> list[str]:
    """The ``n`` most frequent captions (ties in first-seen order)."""
    return [c for c, _ in Counter(captions).most_common(n)]


def constant_cider(gts: Mapping[Hashable, Sequence[str]], caption: str, java: bool | None = None) -> float:
    """CIDEr (a fraction, as pycocoevalcap reports it) of captioning every image of ``gts`` with ``caption``."""
    from pycocoevalcap.cider.cider import Cider

    use_java = java_available() if java is None else java
    gts_tok, res_tok, _, _ = tokenize_for_scoring(gts, {k: caption for k in gts}, use_java)
    score, _ = Cider().compute_score(gts_tok, res_tok)
    return float(score)


def best_constant_caption(gts: Mapping[Hashable, Sequence[str]], candidates: Sequence[str],
                          java: bool | None = None) -> tuple[str, dict[str, float]]:
    """The candidate with the highest CIDEr on ``gts`` (the first on ties), and every candidate's CIDEr."""
    if not candidates:
        raise ValueError("no candidate caption")
    scores = {c: constant_cider(gts, c, java) for c in candidates}
    best = max(candidates, key=lambda c: scores[c])
    return best, scores
