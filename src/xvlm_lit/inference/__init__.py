"""Inference with a trained checkpoint: ``xvlm_lit.load(path)`` and its :class:`Predictor` (see docs/inference.md)."""

from xvlm_lit.inference.errors import ImageReadError, InferenceError, MissingHeadError
from xvlm_lit.inference.gallery import ImageGallery, TextGallery
from xvlm_lit.inference.loader import load
from xvlm_lit.inference.predictor import Predictor
from xvlm_lit.inference.results import Box, Match, Scores

__all__ = ["Box", "ImageGallery", "ImageReadError", "InferenceError", "Match", "MissingHeadError", "Predictor",
           "Scores", "TextGallery", "load"]
