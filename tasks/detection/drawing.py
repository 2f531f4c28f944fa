"""Pictures of detections a person can read: boxes with "label score" captions on images enlarged to a
readable size (on a filled label in the box's colour), and ground truth beside predictions for ``zoo eval detection --out``.

Small images (the built-in scenes are 96-128 px) are enlarged by a whole factor with nearest-neighbour
pixels until the shorter side reaches :data:`MIN_SIDE`, so a caption in a legible TrueType font (the
DejaVu Sans that matplotlib ships) fits above its box; line width and font size follow the drawn size.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageColor, ImageDraw, ImageFont
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_bounding_boxes

PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075", "#a9a9a9"]
MIN_SIDE = 480          # drawn images are enlarged (whole factors) until their shorter side is at least this
GAP = 16                # pixels between ground truth and predictions in a side-by-side picture
TITLE_FONT = 20         # the side-by-side picture's panel titles (pixels), on a white band this much taller
TITLE_PAD = 12
DRAWN_PER_EVALUATION = 8  # images `zoo eval detection --out` draws


def _font() -> str:
    from matplotlib import font_manager

    return font_manager.findfont("DejaVu Sans")


def draw_boxes(image: torch.Tensor, boxes: torch.Tensor, captions: Sequence[str],
               label_ids: Sequence[int]) -> torch.Tensor:
    """``image`` (3, H, W) uint8 enlarged to a readable size with its (N, 4) xyxy ``boxes`` and captions
    drawn, colour by label id; returns (3, kH, kW) uint8."""
    factor = max(1, math.ceil(MIN_SIDE / max(1, min(image.shape[-2:]))))
    enlarged = F.resize(image, [image.shape[-2] * factor, image.shape[-1] * factor],
                        interpolation=F.InterpolationMode.NEAREST)
    if not len(boxes):
        return enlarged
    side = min(enlarged.shape[-2:])
    colours = [PALETTE[int(i) % len(PALETTE)] for i in label_ids]
    return draw_bounding_boxes(enlarged, boxes.float() * factor, list(captions), colors=colours,
                               width=max(2, side // 160), font=_font(), font_size=max(12, side // 28),
                               fill_labels=True, label_colors=[_text_colour(c) for c in colours])


def _text_colour(background: str) -> str:
    """Black on light label backgrounds, white on dark ones (relative luminance of the sRGB colour)."""
    red, green, blue = ImageColor.getrgb(background)[:3]
    return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 140 else "white"


def draw(image: torch.Tensor, boxes: torch.Tensor, names: list[str], scores: torch.Tensor,
         label_ids: torch.Tensor, path: Path) -> Path:
    """Write ``image`` (3, H, W) uint8 with its boxes and "label score" captions to ``path`` (PNG)."""
    captions = [f"{name} {float(score):.2f}" for name, score in zip(names, scores)]
    Image.fromarray(draw_boxes(image, boxes, captions, label_ids.tolist()).permute(1, 2, 0).numpy()).save(path)
    return path


def draw_truth_and_predictions(image: torch.Tensor, truth: tuple[torch.Tensor, torch.Tensor],
                               predicted: tuple[torch.Tensor, torch.Tensor, torch.Tensor], labels: Sequence[str],
                               path: Path, predictions_title: str = "predictions") -> Path:
    """Ground truth (``boxes``, ``labels``) on the left and predictions (``boxes``, ``labels``, ``scores``) on
    the right of one PNG at ``path``, under the titles "ground truth" and ``predictions_title`` on a white
    band; label ids index ``labels``."""
    true_boxes, true_ids = truth
    boxes, ids, scores = predicted
    left = draw_boxes(image, true_boxes, [f"{labels[int(i)]} (truth)" for i in true_ids], true_ids.tolist())
    right = draw_boxes(image, boxes, [f"{labels[int(i)]} {float(s):.2f}" for i, s in zip(ids, scores)], ids.tolist())
    gap = torch.full((3, left.shape[-2], GAP), 255, dtype=torch.uint8)
    pair = Image.fromarray(torch.cat([left, gap, right], dim=-1).permute(1, 2, 0).numpy())
    picture = Image.new("RGB", (pair.width, pair.height + TITLE_FONT + TITLE_PAD), "white")
    picture.paste(pair, (0, TITLE_FONT + TITLE_PAD))
    pen, font = ImageDraw.Draw(picture), ImageFont.truetype(_font(), TITLE_FONT)
    for title, x in (("ground truth", 0), (predictions_title, left.shape[-1] + GAP)):
        pen.text((x + 4, TITLE_PAD // 2), title, fill="black", font=font)
    picture.save(path)
    return path
