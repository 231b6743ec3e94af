"""Caption cleaning (SPEC section 5), caption picking and the left/right swap used with horizontal flips."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import torch

# Characters removed outright ("don't" -> "dont"), as in the reference's pre_caption.
_DROP_RE = re.compile(r"[,.'!?\"()*#:;~]")
# Characters turned into a space.
_SPACE_RE = re.compile(r"[-/]")
# Whole words "left" / "right" (word boundaries: "leftmost", "brightness" are untouched; "left-hand" is swapped).
_LEFT_RIGHT_RE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def clean_caption(text: str, max_words: int) -> str:
    """Normalise a caption as the reference does.

    Lowercase; drop ``, . ' ! ? " ( ) * # : ; ~``; ``-`` and ``/`` become spaces; all whitespace runs collapse to
    one space (leading/trailing removed); keep the first ``max_words`` words.

    Returns:
        The cleaned caption, or ``""`` when nothing is left (the caller counts the sample as invalid and skips it).
    """
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    text = _DROP_RE.sub("", text.lower())
    text = _SPACE_RE.sub(" ", text)
    words = text.split()
    return " ".join(words[:max_words])


def pick_caption(caption: str | Sequence[str], rng: random.Random | torch.Generator | None = None) -> str:
    """Return ``caption`` itself, or one element of a list of captions drawn uniformly with ``rng``.

    ``rng`` may be a ``random.Random``, a ``torch.Generator`` or ``None`` (torch's global generator).
    """
    if isinstance(caption, str):
        return caption
    if len(caption) == 0:
        raise ValueError("pick_caption got an empty list of captions")
    if len(caption) == 1:
        return caption[0]
    if isinstance(rng, random.Random):
        return caption[rng.randrange(len(caption))]
    return caption[int(torch.randint(len(caption), (1,), generator=rng))]


def _swap_match(match: re.Match[str]) -> str:
    word = match.group(0)
    other = "right" if word.lower() == "left" else "left"
    if word.isupper():
        return other.upper()
    if word[0].isupper():
        return other.capitalize()
    return other


def swap_left_right(text: str) -> str:
    """Swap the whole words "left" and "right" (for a horizontally flipped image), keeping their case style.

    "Left" -> "Right", "LEFT" -> "RIGHT", "left" -> "right"; words that merely contain them ("leftmost", "bright")
    are untouched.
    """
    return _LEFT_RIGHT_RE.sub(_swap_match, text)


def has_left_right(text: str) -> bool:
    """True when ``text`` contains the whole word "left" or "right" (any case)."""
    return _LEFT_RIGHT_RE.search(text) is not None
