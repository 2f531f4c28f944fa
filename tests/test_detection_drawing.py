"""Detection pictures: enlarged to a readable size, boxes in their label's colour, truth beside predictions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageColor

from tasks.detection.drawing import (GAP, MIN_SIDE, PALETTE, TITLE_FONT, TITLE_PAD, draw, draw_boxes,
                                     draw_truth_and_predictions)


def _image(size: int = 96) -> torch.Tensor:
    return torch.full((3, size, size), 200, dtype=torch.uint8)   # (3, H, W) light grey


def test_small_images_are_enlarged_by_a_whole_factor_with_nearest_pixels() -> None:
    image = torch.randint(0, 256, (3, 96, 80), dtype=torch.uint8)
    drawn = draw_boxes(image, torch.zeros(0, 4), [], [])
    factor = -(-MIN_SIDE // 80)
    assert drawn.shape == (3, 96 * factor, 80 * factor)
    assert torch.equal(drawn[:, ::factor, ::factor], image)
    large = torch.zeros(3, 600, 700, dtype=torch.uint8)
    assert draw_boxes(large, torch.zeros(0, 4), [], []).shape == large.shape   # big enough: left as it is


def test_a_box_is_drawn_in_its_labels_colour_where_the_box_lies() -> None:
    drawn = draw_boxes(_image(), torch.tensor([[20.0, 40.0, 60.0, 80.0]]), ["coat 0.90"], [3])
    factor = MIN_SIDE // 96
    colour = torch.tensor(ImageColor.getrgb(PALETTE[3]), dtype=torch.uint8)
    left_edge = drawn[:, 60 * factor, 20 * factor]          # on the box's left edge, mid-height
    assert torch.equal(left_edge, colour)
    assert torch.equal(drawn[:, 10 * factor, 90 * factor], torch.tensor([200, 200, 200], dtype=torch.uint8))


def test_truth_and_predictions_sit_side_by_side(tmp_path: Path) -> None:
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    path = draw_truth_and_predictions(_image(), (boxes, torch.tensor([0])),
                                      (boxes + 20, torch.tensor([1]), torch.tensor([0.8])), ["bag", "shoe"],
                                      tmp_path / "pair.png")
    factor = MIN_SIDE // 96
    with Image.open(path) as picture:
        assert picture.size == (2 * 96 * factor + GAP, 96 * factor + TITLE_FONT + TITLE_PAD)
        pixels = torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1)   # (3, H, W)
    band, pixels = pixels[:, :TITLE_FONT + TITLE_PAD], pixels[:, TITLE_FONT + TITLE_PAD:]
    width = 96 * factor
    assert (band[:, :, :width] < 100).all(dim=0).any() and (band[:, :, width + GAP:] < 100).all(dim=0).any()  # titles
    truth_colour = torch.tensor(ImageColor.getrgb(PALETTE[0]), dtype=torch.uint8)
    predicted_colour = torch.tensor(ImageColor.getrgb(PALETTE[1]), dtype=torch.uint8)
    assert torch.equal(pixels[:, 30 * factor, 10 * factor], truth_colour)                        # left: truth
    assert torch.equal(pixels[:, 50 * factor, 96 * factor + GAP + 30 * factor], predicted_colour)  # right: prediction


def test_draw_writes_a_png_with_captions(tmp_path: Path) -> None:
    path = draw(_image(), torch.tensor([[5.0, 30.0, 90.0, 90.0]]), ["trouser"], torch.tensor([0.5]),
                torch.tensor([2]), tmp_path / "one.png")
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size == (96 * (MIN_SIDE // 96),) * 2
