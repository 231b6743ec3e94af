"""Caption cleaning (SPEC section 5), caption picking and the left/right swap."""

import random

import pytest
import torch

from xvlm_lit.data.text import clean_caption, has_left_right, pick_caption, swap_left_right


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A man's dog, running!", "a mans dog running"),
        ("Red-and-white/blue  SIGN.", "red and white blue sign"),
        ('(Hello) "World" *#:;~?', "hello world"),
        ("  multiple\t\nspaces \r\n here ", "multiple spaces here"),
        ("Is it 3:30? Yes; it's 3.30!", "is it 330 yes its 330"),
        ("a--b//c", "a b c"),
        ("ÉCOLE Über", "école über"),
        ("keep <tags> & _underscores_ 100%", "keep <tags> & _underscores_ 100%"),
    ],
)
def test_clean_caption_golden(raw: str, expected: str) -> None:
    assert clean_caption(raw, max_words=50) == expected


def test_clean_caption_truncates_to_max_words() -> None:
    assert clean_caption("One, two - three/four five", max_words=3) == "one two three"
    assert clean_caption("one two", max_words=2) == "one two"
    assert clean_caption("one two", max_words=1) == "one"


@pytest.mark.parametrize("raw", ["", "   ", "...!!!", " - / ", "(*#:;~)", "'\"?"])
def test_clean_caption_empty_result_is_empty_string(raw: str) -> None:
    assert clean_caption(raw, max_words=30) == ""


def test_clean_caption_rejects_non_positive_max_words() -> None:
    with pytest.raises(ValueError):
        clean_caption("a dog", max_words=0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("the man on the left", "the man on the right"),
        ("right of the left car", "left of the right car"),
        ("Left and RIGHT", "Right and LEFT"),
        ("left, right.", "right, left."),
        ("the left-hand side", "the right-hand side"),
        ("leftmost bright righteous lefty copyright", "leftmost bright righteous lefty copyright"),
        ("no sides here", "no sides here"),
        ("", ""),
    ],
)
def test_swap_left_right(raw: str, expected: str) -> None:
    assert swap_left_right(raw) == expected


def test_swap_left_right_is_an_involution() -> None:
    text = "Left of the right tree, left-most is LEFT; Right!"
    assert swap_left_right(swap_left_right(text)) == text


def test_has_left_right() -> None:
    assert has_left_right("turn LEFT here")
    assert has_left_right("right")
    assert not has_left_right("leftmost and bright")


def test_pick_caption_string_and_list() -> None:
    assert pick_caption("only one", random.Random(0)) == "only one"
    assert pick_caption(["single"], random.Random(0)) == "single"
    caps = ["a", "b", "c", "d"]
    picks_py = [pick_caption(caps, random.Random(seed)) for seed in range(200)]
    assert set(picks_py) == set(caps)
    gen = torch.Generator().manual_seed(0)
    picks_torch = [pick_caption(caps, gen) for _ in range(200)]
    assert set(picks_torch) == set(caps)
    # deterministic given the seed
    assert pick_caption(caps, random.Random(7)) == pick_caption(caps, random.Random(7))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert [pick_caption(caps, g1) for _ in range(10)] == [pick_caption(caps, g2) for _ in range(10)]


def test_pick_caption_empty_list_raises() -> None:
    with pytest.raises(ValueError):
        pick_caption([], random.Random(0))
