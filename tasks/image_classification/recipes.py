"""Named bundles of image classification flags (``zoo train image_classification --recipe NAME``).

A recipe fills only what the command line leaves unset: a flag given explicitly (or by
``--config``) wins, and keys given in ``--backbone-args`` / ``--head-args`` win over the recipe's.
The values end up in ``args``, so the run's ``args.json`` records what the recipe chose.
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """Flag values (``argparse`` destinations), backbone arguments (our ViTs only) and head arguments."""

    flags: Mapping[str, Any] = field(default_factory=dict)
    backbone_args: Mapping[str, Any] = field(default_factory=dict)
    head_args: Mapping[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    # Chosen by validation top-1 in one-minute runs on digits (same seed and budget, one thread): the conv stem
    # was the one option that paid. Drop path, TrivialAugment and MixUp/CutMix each cost accuracy at a few
    # epochs, so they stay flags for longer runs (``--augment``, ``--mixup``, ``--cutmix``, ``drop_path``).
    "small-data": Recipe(backbone_args={"stem": "conv"}, head_args={"label_smoothing": 0.1}),
}


def apply_recipe(args: argparse.Namespace, backbone_fields: Mapping[str, Any] | None) -> None:
    """Fill ``args`` from ``args.recipe`` (None: nothing) under what the user gave.

    ``backbone_fields``: the config fields of the backbone being built new; the recipe's backbone
    arguments apply only when it has them all (our ViTs, not timm models or a transferred backbone).
    """
    name = getattr(args, "recipe", None)
    if name is None:
        return
    recipe = RECIPES[name]
    for flag, value in recipe.flags.items():
        if getattr(args, flag, None) is None:
            setattr(args, flag, value)
    if backbone_fields is not None and all(key in backbone_fields for key in recipe.backbone_args):
        args.backbone_args = {**recipe.backbone_args, **(args.backbone_args or {})}
    args.head_args = {**recipe.head_args, **(args.head_args or {})}
