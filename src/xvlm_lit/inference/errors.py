"""Errors of the inference API: each message names the file or the missing part and says what to do."""

from __future__ import annotations


class InferenceError(ValueError):
    """Input the inference API cannot use (printed as one line by ``python -m xvlm_lit.predict``)."""


class ImageReadError(InferenceError):
    """An image path that does not exist or does not decode, or an object that is not an image."""


class MissingHeadError(InferenceError):
    """The checkpoint lacks the head a method needs; the message names the head and the experiment training it."""

    def __init__(self, head: str, experiment: str, why: str = "") -> None:
        self.head, self.experiment = head, experiment
        extra = f" ({why})" if why else ""
        super().__init__(f"this checkpoint has no {head}{extra}: fine-tune with experiment={experiment}")
