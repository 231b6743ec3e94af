"""Pictures of evaluation examples: boxes where the numbers say, the true image framed, files and W&B images."""

import numpy as np
import pytest
import torch
from PIL import Image

from xvlm_lit.callbacks.pictures import (
    PRED,
    TRUE,
    draw_grounding,
    draw_heatmap,
    grounding_examples,
    loss_curve_png,
    read_curves,
    retrieval_examples,
    to_pil,
    write_pictures,
)
from xvlm_lit.data.transforms_common import to_tensor_normalized


def grey(size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), (128, 128, 128))


def pixel(picture: Image.Image, x: float, y: float) -> tuple[int, int, int]:
    return picture.getpixel((round(x), round(y)))


def test_grounding_boxes_are_drawn_where_the_coordinates_say():
    pic = draw_grounding(grey(), "the red square", true_xyxy=[8, 8, 24, 24], pred_xyxy=[30, 34, 60, 50], scale=2)
    assert pic.width == 128 and pic.height > 128  # enlarged, with the text band below
    assert pixel(pic, 8 * 2, 16 * 2) == TRUE  # left edge of the true box
    assert pixel(pic, 30 * 2, 40 * 2) == PRED  # left edge of the predicted box
    assert pixel(pic, 45 * 2, 40 * 2) == (128, 128, 128)  # inside the predicted box: the image untouched
    band = np.asarray(pic)[130:, :, :]
    assert (band < 100).any() and (band == 255).any()  # dark text on the white band


def test_to_pil_inverts_the_normalisation():
    image = Image.new("RGB", (8, 8), (200, 40, 90))
    back = to_pil(to_tensor_normalized(image))
    assert np.abs(np.asarray(back).astype(int) - np.asarray(image).astype(int)).max() <= 1


def images_of_colours(colours):
    return torch.stack([to_tensor_normalized(Image.new("RGB", (32, 32), c)) for c in colours])


def test_grounding_and_retrieval_examples_count_and_content():
    colours = [(250, 0, 0), (0, 0, 250), (0, 250, 0), (250, 250, 0), (0, 250, 250), (250, 0, 250)]
    images = images_of_colours(colours)
    texts = [f"text {i}" for i in range(10)]
    boxes = torch.tensor([[2.0, 2.0, 10.0, 10.0]]).repeat(10, 1)
    ground = grounding_examples(images, torch.arange(10) % 6, texts, boxes, boxes + 12, n=8)
    assert [name for name, _ in ground] == texts[:8]
    inside = pixel(ground[1][1], 28 * 2, 28 * 2)  # image 1 (blue), away from both boxes
    assert max(abs(a - b) for a, b in zip(inside, (0, 0, 250), strict=True)) <= 1
    assert pixel(ground[1][1], 2 * 2, 6 * 2) == TRUE and pixel(ground[1][1], 14 * 2, 18 * 2) == PRED
    top = torch.tensor([[0, 1, 2, 3, 4]] * 10)
    t2i = torch.tensor([2, 0, 5, 1, 1, 1, 1, 1, 1, 1])
    rows = retrieval_examples(images, texts, t2i, top, n=3)
    assert len(rows) == 3
    row0 = np.asarray(rows[0][1])
    # thumbnails are the ranked images' colours, in order; rank 3 (image 2) is framed green, others grey
    assert len(np.unique(row0.reshape(-1, 3), axis=0)) > 5
    framed = [pixel(rows[0][1], 6 + r * 102 - 2, rows[0][1].height - 60) for r in range(5)]
    assert framed[2] == TRUE and all(f != TRUE for i, f in enumerate(framed) if i != 2)
    assert rows[0][1].width == 6 + 5 * 102  # the true image is among the five: nothing appended
    # text 2's true image (5) is not in its top 5: it is appended as a sixth, framed green
    assert rows[2][1].width == 6 + 6 * 102
    assert pixel(rows[2][1], 6 + 5 * 102 - 2, rows[2][1].height - 60) == TRUE


def test_write_pictures_files_and_wandb(tmp_path):
    class WandbLogger:  # the name is what write_pictures looks for
        def __init__(self):
            self.calls = []

        def log_image(self, **kw):
            self.calls.append(kw)

    wb = WandbLogger()
    pics = [(f"a b/{i}", grey(16)) for i in range(3)]
    paths = write_pictures(pics, tmp_path, "zero_shot_grounding", loggers=[object(), wb], step=7)
    assert [p.name for p in paths] == ["00_a_b_0.png", "01_a_b_1.png", "02_a_b_2.png"]
    assert all(p.parent == tmp_path / "pictures" / "zero_shot_grounding" for p in paths)
    assert Image.open(paths[0]).size == (16, 16)
    (call,) = wb.calls
    assert call["key"] == "pictures/zero_shot_grounding" and call["step"] == 7 and len(call["images"]) == 3
    assert write_pictures([], tmp_path, "none") == [] and not (tmp_path / "pictures" / "none").exists()


def test_heatmap_is_hot_where_the_heat_is():
    heat = torch.zeros(4, 4)
    heat[0, 3] = 1.0  # top-right cell
    pic = draw_heatmap(grey(64), heat, "x", scale=1)
    top_right, bottom_left = pixel(pic, 56, 8), pixel(pic, 8, 56)
    assert top_right[0] > 170 and top_right[1] < 100
    assert bottom_left == (128, 128, 128)


def test_loss_curve_from_metrics_csv(tmp_path):
    csv = tmp_path / "metrics.csv"
    rows = ["epoch,step,train/loss,train/itc_loss,lr-AdamW,val/acc50"]
    rows += [f"0,{s},{10 - s * 0.1:.3f},{5 - s * 0.05:.3f},0.001," for s in range(0, 100, 10)]
    rows += ["0,99,,,,50.0"]
    csv.write_text("\n".join(rows) + "\n")
    curves = read_curves(csv)
    assert sorted(curves) == ["train/itc_loss", "train/loss"]
    assert curves["train/loss"][:2] == [(0, 10.0), (10, 9.0)]
    out = loss_curve_png(csv, tmp_path / "pictures" / "loss.png")
    pic = np.asarray(Image.open(out))
    assert pic.shape == (420, 720, 3)
    colours = {tuple(c) for c in pic.reshape(-1, 3)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # two curves drawn
    (tmp_path / "empty.csv").write_text("epoch,step,lr-AdamW\n0,1,0.1\n")
    assert loss_curve_png(tmp_path / "empty.csv", tmp_path / "none.png") is None


@pytest.mark.parametrize("n", [0, 2])
def test_zero_shot_pictures_count(tmp_path, n):
    from xvlm_lit.data.eval_data import GroundingEval, RetrievalEval
    from xvlm_lit.evaluation.retrieval import RetrievalResult
    from xvlm_lit.evaluation.run import write_zero_shot_pictures

    images = images_of_colours([(250, 0, 0), (0, 0, 250), (0, 250, 0)])
    empty = torch.zeros(3, 4, dtype=torch.long)
    retrieval = RetrievalEval(images, ["a", "b", "c"], empty, empty, torch.arange(3), ["i0", "i1", "i2"])
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 3)
    grounding = GroundingEval(images, ["r", "s", "t"], empty, empty, torch.arange(3), boxes, boxes / 32, ["a"] * 3)
    top = torch.tensor([[0, 1, 2]] * 3)
    result = RetrievalResult({}, top, top.float(), top, top.float(), torch.arange(3), torch.arange(3))
    pred = torch.tensor([[0.75, 0.75, 0.5, 0.5]] * 3)  # normalised cxcywh: pixels 16..32 of the 32-px image
    paths = write_zero_shot_pictures(retrieval, grounding, {"retrieval": result, "grounding_pred": pred}, n, tmp_path)
    assert len(paths) == 2 * n
    if n:
        g = Image.open(tmp_path / "pictures" / "zero_shot_grounding" / "00_r.png").convert("RGB")
        assert pixel(g, 16 * 2, 24 * 2) == PRED and pixel(g, 0, 8 * 2) == TRUE
