"""Captions of annotated scenes, from their annotations alone: which items, where, on what background.

One deterministic template (the same annotations always give the same caption)::

    a bag at the top left, a sneaker in the centre and an ankle boot at the bottom right on grass

Each item is placed by its box centre in a 3x3 grid of the image (left / centre / right by thirds
of the width, top / middle / bottom by thirds of the height); items are named in reading order of
their cells (top row first, left to right), ties by the centre's x then y. The background, when
known, is the scikit-image picture the scene was cut from (:data:`BACKGROUND_NOUNS`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

# Fashion-MNIST class names -> the noun a caption uses (other names: lower-cased as they are)
ITEM_NOUNS = {
    "T-shirt/top": "t-shirt", "Trouser": "pair of trousers", "Pullover": "pullover", "Dress": "dress", "Coat": "coat",
    "Sandal": "sandal", "Shirt": "shirt", "Sneaker": "sneaker", "Bag": "bag", "Ankle boot": "ankle boot",
}
# scikit-image pictures of the detection scenes (file stem) -> what a caption says the items are on
BACKGROUND_NOUNS = {
    "astronaut": "an astronaut photo", "brick": "a brick wall", "camera": "a cameraman photo",
    "chelsea": "a cat photo", "coffee": "a coffee cup", "coins": "coins", "grass": "grass", "gravel": "gravel",
    "hubble_deep_field": "a starry sky", "ihc": "a tissue sample", "moon": "the moon",
    "motorcycle_left": "a motorcycle", "rocket": "a rocket",
}
_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "centre", "right")


def item_noun(label: str) -> str:
    """The noun phrase of class ``label`` with its article: "a bag", "an ankle boot"."""
    noun = ITEM_NOUNS.get(label, label.strip().lower())
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def background_noun(name: str) -> str:
    """What a caption calls background picture ``name`` (a file name or stem: "grass.png" -> "grass")."""
    stem = Path(name).stem
    return BACKGROUND_NOUNS.get(stem, stem.replace("_", " ").lower())


def cell(box: Sequence[float], width: int, height: int) -> tuple[int, int]:
    """(row, column) in 0..2 of the 3x3 grid cell holding the centre of xyxy ``box``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return min(2, max(0, int(3 * cy / height))), min(2, max(0, int(3 * cx / width)))


def where(row: int, column: int) -> str:
    """The place phrase of a grid cell: "at the top left", "on the right", "in the centre"."""
    if row == 1:
        return "in the centre" if column == 1 else f"on the {_COLUMNS[column]}"
    return f"at the {_ROWS[row]}" if column == 1 else f"at the {_ROWS[row]} {_COLUMNS[column]}"


def describe(boxes: Sequence[Sequence[float]], labels: Sequence[str], width: int, height: int,
             background: str | None = None) -> str:
    """The caption of a scene: ``boxes`` N xyxy pixel boxes of an image of ``width`` x ``height`` with
    their N class names ``labels``, on the ``background`` picture (a file name) when known."""
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} boxes for {len(labels)} labels")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    placed = sorted((((*cell(box, width, height), (box[0] + box[2]) / 2, (box[1] + box[3]) / 2), label)
                     for box, label in zip(boxes, labels)), key=lambda item: item[0])
    phrases = [f"{item_noun(label)} {where(key[0], key[1])}" for key, label in placed]
    if not phrases:
        items = "nothing"
    elif len(phrases) == 1:
        items = phrases[0]
    else:
        items = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{items} on {background_noun(background)}" if background else items
