"""Image loading and box geometry shared by the converters."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from data_prep.images import ImageSkip, fit_box, load_image, orient_box, target_size
from data_prep.shards import resize_max_side


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_box_follows_exif_transpose(orientation):
    pixels = np.zeros((60, 100), np.uint8)
    box = [13, 7, 30, 20]
    pixels[7:27, 13:43] = 255
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    image.getexif()[0x0112] = orientation
    upright = np.asarray(ImageOps.exif_transpose(image))
    ys, xs = np.nonzero(upright)
    expected = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert orient_box(box, orientation, (100, 60)) == expected


@pytest.mark.parametrize("bbox, result", [
    ([10, 10, 20, 20], ([5.0, 5.0, 10.0, 10.0], "")),
    ([85, 10, 20, 20], ([42.5, 5.0, 7.5, 10.0], "bbox_clipped")),  # 75% inside: clipped and kept
    ([90, 10, 20, 20], (None, "bbox_outside_image")),  # exactly half inside is not enough
    ([-5, -5, 20, 20], ([0.0, 0.0, 7.5, 7.5], "bbox_clipped")),
    ([120, 10, 5, 5], (None, "bbox_outside_image")),
    ([10, 10, 0, 5], (None, "bbox_empty")),
    ([10, 10, float("nan"), 5], (None, "bbox_malformed")),
    (["a", 1, 2, 3], (None, "bbox_malformed")),
    ([1, 2, 3], (None, "bbox_malformed")),
])
def test_fit_box_cases(bbox, result):
    assert fit_box(bbox, (100, 100), (50, 50)) == result


def test_fit_box_normalised_frame():
    assert fit_box([0.25, 0.5, 0.5, 0.25], (1.0, 1.0), (200, 100)) == ([50.0, 50.0, 100.0, 25.0], "")


@pytest.mark.parametrize("size", [(2000, 1500), (1500, 2000), (511, 300), (4096, 17)])
def test_load_image_sizes_match_resize_max_side(size):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    loaded = load_image(buf.getvalue(), 512)
    assert loaded.image.size == target_size(*size, 512) == resize_max_side(image, 512)[0].size
    assert loaded.full == size and loaded.image.mode == "RGB"


def test_load_image_modes_and_errors(tmp_path):
    grey = tmp_path / "grey.png"
    Image.new("LA", (30, 20), (128, 200)).save(grey)
    assert load_image(str(grey)).image.mode == "RGB"
    with pytest.raises(ImageSkip) as err:
        load_image([str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")])
    assert err.value.reason == "missing_image"
    truncated = tmp_path / "t.jpg"
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), "red").save(buf, format="JPEG")
    truncated.write_bytes(buf.getvalue()[:200])
    with pytest.raises(ImageSkip) as err:
        load_image(str(truncated))
    assert err.value.reason == "unreadable_image"
