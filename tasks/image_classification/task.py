"""The image classification Task: a ViT or any ``timm/<name>`` backbone + the pooled classification head.

The preprocessing (``transforms.default_transform_config`` plus the augmentation flags) is
stored in the checkpoint's ``preprocessing["transform"]``; every collate, ``zoo eval`` and
``zoo predict`` rebuild the pipelines from it, so prediction preprocesses exactly as
training did. Defaults, in order of precedence after explicit flags:

- image size: ``--image-size``; else the built-in set's (28 for Fashion-MNIST, 8 for digits);
  else the first training image's shorter side, at most 224.
- normalisation: the ``--init-backbone`` checkpoint's; else timm's pretrained mean/std when a
  timm ``checkpoint_path`` is loaded; else the built-in set's statistics; else ImageNet's.
- our ViTs get ``img_size`` and a patch size: 4x4 patches on images of 64 pixels or less
  (7x7-pixel patches on Fashion-MNIST), 16-pixel patches above; the default ``vit_tiny`` on
  small images is also shrunk to :data:`SMALL_VIT`. On Fashion-MNIST that beat 4-pixel patches
  at dim 64 in accuracy per CPU second (fewer, larger matrix products; 17 tokens instead of 50).
  ``--backbone-args`` override all of it.

Fine-tuning: ``--init-backbone RUN_DIR`` rebuilds the backbone as that checkpoint describes it
(the trainer then copies its weights) with a new head for this data's classes;
``--backbone timm/NAME --backbone-args '{"checkpoint_path": "FILE"}'`` starts a timm backbone
from a local weights file. That path is not stored in the new checkpoint: its weights are.
``--pretrained`` a transformers ViT folder or a timm ViT ``.safetensors`` file or hub folder
converts it into our ``vit_*`` (``zoo.create_model(pretrained=...)``; the stored classifier is
kept when its shape fits this data's classes, else the head is new); the transforms then use the
ViT's image size (unless ``--image-size``) and the mean/std the source records (else ImageNet's).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

import zoo
from tasks.engine.batching import ordered_chunks
from tasks.engine.confusion import CONFUSION_PNG
from tasks.engine.data import parse_spec
from tasks.engine.evaluation import EvalOptions, run_batches
from tasks.engine.flags import NON_NEGATIVE, POSITIVE_INT, PROBABILITY, Range
from tasks.engine.images import as_image, image_stem, stored_transform
from tasks.engine.precision import has_bf16_units
from tasks.engine.pretrained import source_kind, zoo_backbone
from tasks.engine.task import Metric, Task
from tasks.image_classification.batched import batched_train_transform
from tasks.image_classification.builtin import BUILTIN_IMAGE_STATS, BUILTIN_SETS
from tasks.image_classification.cache import in_memory
from tasks.image_classification.evaluation import TOP_K, classify, metrics
from tasks.image_classification.explain import explain, save_overlay
from tasks.image_classification.formats import FORMATS, LabelledImages, align_classes
from tasks.image_classification.recipes import RECIPES, apply_recipe
from tasks.image_classification.transforms import (AUGMENTS, IMAGENET_MEAN, IMAGENET_STD, build_transform,
                                                   default_transform_config, mixup_cutmix)
from zoo.registry import BACKBONES
from zoo.results import Classification

MAX_AUTO_SIZE = 224
SMALL_IMAGE = 64
SMALL_VIT: dict[str, Any] = dict(dim=128, depth=6, heads=4)   # the default vit_tiny on <= 64 px images
SMALL_GRID = 4                                               # patches per side on <= 64 px images
LARGE_PATCH = 16
CROP_SCALE = Range(float, 0, 1, low_open=True)   # --crop-scale: the kept fraction of the area
# Per built-in set: flips only. Minutes of CPU training are a few epochs, too few for augmentation to
# pay: on Fashion-MNIST, 200 steps reach 77% validation top-1 without random crops, 71% with 0.7-1 crops.
BUILTIN_AUGMENT: dict[str, dict[str, Any]] = {
    "default": dict(augment="none", scale=[1.0, 1.0]),
    "digits": dict(augment="none", scale=[1.0, 1.0], hflip=0.0),   # a mirrored 2 is no digit
}


@zoo.register_task("image_classification")
class ImageClassificationTask(Task):
    """Label images with one of a set of classes; primary metric top-1 accuracy."""

    name = "image_classification"
    modality = "image"
    default_backbone = "vit_tiny"
    default_head = "classification"
    metric = Metric("top1", higher_is_better=True)
    pretrained_kinds = ("zoo", "vit", "timm_vit")
    formats = FORMATS
    builtin_sets = BUILTIN_SETS
    quick_set = "digits"
    evaluation_pictures = (CONFUSION_PNG,)
    train_defaults = dict(batch_size=128, lr=3e-3, weight_decay=0.05, warmup_steps=100, eval_every=1000)
    # the demo's digits run: the small-data recipe beats logistic regression on pixels (0.956) in 60 s
    demo_args = ("--time-budget", "60", "--recipe", "small-data", "--warmup-steps", "20")
    head_defaults = {"classification": dict(label_smoothing=0.1)}

    # ---- data -------------------------------------------------------------------------
    def datasets(self, spec: str, split: str) -> LabelledImages:
        """The samples of ``split``, decoded into memory when they are small (see ``cache``)."""
        return in_memory(super().datasets(spec, split))

    def explanation_inputs(self, dataset: Dataset, folder: Path, count: int = 2) -> list[str]:
        """The first ``count`` images, written into ``folder`` as ``validation-I.png`` (samples held in memory
        have no file `zoo explain` could read)."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = [str(folder / f"validation-{i}.png") for i in range(min(count, len(dataset)))]
        for i, path in enumerate(paths):
            as_image(dataset[i]["image"], f"validation sample {i}").save(path)
        return paths

    def make_collate(self, model: torch.nn.Module, train: bool) -> Callable[[list[dict]], dict]:
        """Samples -> ``{"inputs": (B, 3, S, S) float, "labels": (B,) long or (B, C) soft}``.

        The pipelines come from ``model.preprocessing["transform"]``; training batches of same-size PIL
        images without a per-image policy take the batched pipeline (``batched``); MixUp/CutMix (train
        only) mix whole batches when the config turns them on.
        """
        config = stored_transform(model, self.name)
        transform = build_transform(config, train)
        batched = batched_train_transform(config) if train else None
        mix = mixup_cutmix(config, len(model.head.labels)) if train else None

        def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
            pictures = [sample["image"] for sample in samples]
            if batched is not None and _same_size_pictures(pictures):
                images = batched(pictures)  # (B, 3, S, S)
            else:
                images = torch.stack([transform(picture) for picture in pictures])  # (B, 3, S, S)
            labels = torch.tensor([sample["label"] for sample in samples], dtype=torch.long)
            if mix is not None:
                images, labels = mix(images, labels)  # labels become (B, C) soft targets
            return {"inputs": images, "labels": labels}

        return collate

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Image size and augmentation flags; sets this task's training defaults."""
        group = parser.add_argument_group("image classification")
        group.add_argument("--image-size", type=POSITIVE_INT, default=None,
                           help="input side in pixels (default: the built-in set's, else the first image's, <= 224)")
        group.add_argument("--augment", choices=AUGMENTS, default=None,
                           help="policy after crop and flip (default: none on the built-in sets, else trivial)")
        group.add_argument("--hflip", type=PROBABILITY, default=None, help="horizontal flip probability (default 0.5)")
        group.add_argument("--crop-scale", type=CROP_SCALE, default=None, metavar="MIN",
                           help="random resized crops keep MIN..1 of the area (1: no cropping; default: "
                                "1 on the built-in sets, 0.7 for other images up to 64 px, else 0.08)")
        group.add_argument("--mixup", type=NON_NEGATIVE, default=None, metavar="ALPHA",
                           help="MixUp alpha (default 0: off)")
        group.add_argument("--cutmix", type=NON_NEGATIVE, default=None, metavar="ALPHA",
                           help="CutMix alpha (default 0: off)")
        group.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                           help="a bundle of defaults under the flags given; small-data: the conv stem on our "
                                "ViTs and label smoothing 0.1")
        super().add_arguments(parser)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")    # --device auto's kind
        # bf16 on a GPU that has it; fp32 on every CPU: on AVX512-BF16 (Zen 4) the small ViTs train at
        # 0.71-0.74x fp32's speed under bf16 autocast (issue 18's measurement)
        parser.set_defaults(precision="bf16" if device.type == "cuda" and has_bf16_units(device) else "fp32")

    def build_model(self, args: argparse.Namespace, train_set: Dataset) -> zoo.ZooModel:
        """Backbone (new, or the architecture of ``--init-backbone``) + classification head + transforms."""
        labels = list(train_set.classes)
        builtin = _builtin_name(getattr(args, "data", "") or "")
        source = getattr(args, "init_backbone", None)
        new_backbone = args.backbone or self.default_backbone
        apply_recipe(args, None if source else BACKBONES.meta(new_backbone).get("config"))
        head_args = {**self.head_args(args.head or self.default_head, args.head_args),
                     "num_classes": len(labels), "labels": labels}
        if source and source_kind(source) == "weights":
            # the ViT converted from ``source``, transforms at its size and statistics; ``--backbone timm/vit_*``
            # (with ``--backbone-args``) names the timm model of a bare weights file, for its number of heads
            model = zoo.create_model(args.backbone, args.head or self.default_head, pretrained=source,
                                     backbone_args=args.backbone_args, task=self.name, **head_args)
            pre = model.preprocessing
            gray = bool(builtin is not None and BUILTIN_IMAGE_STATS[builtin]["grayscale_source"])
            transform = default_transform_config(args.image_size or model.backbone.cfg.img_size,
                                                 pre.get("mean", IMAGENET_MEAN), pre.get("std", IMAGENET_STD), gray)
        else:
            if source:
                name, backbone_args, transform = _transferred(args, self.default_backbone)
                backbone = zoo.create_backbone(name, **backbone_args)
            else:
                name = new_backbone
                size = args.image_size or (BUILTIN_IMAGE_STATS[builtin]["image_size"] if builtin is not None
                                           else min(MAX_AUTO_SIZE, min(train_set[0]["image"].size)))
                stem = {**BACKBONES.meta(name).get("config", {}), **(args.backbone_args or {})}.get("stem", "patch")
                backbone_args = {**vit_defaults(name, size, is_default=name == self.default_backbone, stem=stem),
                                 **(args.backbone_args or {})}
                backbone = zoo.create_backbone(name, **backbone_args)
                transform = _new_transform(size, builtin, backbone, "checkpoint_path" in backbone_args)
            self.check_backbone(backbone, name)
            if "checkpoint_path" in backbone_args:  # its weights travel in model.safetensors, not the path
                backbone.zoo_spec["args"] = {k: v for k, v in backbone_args.items() if k != "checkpoint_path"}
            model = zoo.ZooModel(backbone, zoo.create_head(args.head or self.default_head, backbone, **head_args),
                                 task=self.name)
        transform.update(_augment_flags(args, builtin))
        build_transform(transform, train=True)  # a bad flag fails here, naming the field
        model.preprocessing = {"transform": transform}
        return model

    # ---- evaluation and prediction -----------------------------------------------------
    eval_batch_size = 128

    def evaluate(self, model: torch.nn.Module, dataset: Dataset, options: EvalOptions) -> dict[str, Any]:
        """``top1``, ``top5``, ``loss``, ``per_class_accuracy``; the confusion matrix to ``options.out`` when set."""
        labels = model.head.labels
        align_classes(dataset, labels)
        logits, target = classify(model, dataset, self.make_collate(model, train=False),
                                  options.batch_size or self.eval_batch_size, options)
        return metrics(logits, target, labels, options.out, options.subject())

    def predict(self, model: torch.nn.Module, inputs: Sequence[str | Path | Image.Image | np.ndarray | torch.Tensor],
                top_k: int = TOP_K, explain_to: str | Path | None = None, batch_size: int = 64,
                explain_method: str = "auto", **options: Any) -> list[dict[str, Any]]:
        """Per image (a file path, a PIL image, an (H, W, 3) uint8 array or a (3, H, W) tensor: ``as_image``):
        ``{"label", "probability", "top": [{"label", "probability"}...]}``.

        ``explain_to`` (a folder) also writes a PNG per image of where the model looked
        (``explain_method`` "auto": attention rollout for our ViT, gradient saliency otherwise),
        titled with the label, its probability and the method, named in ``"explanation"``.
        """
        config = stored_transform(model, self.name)
        transform = build_transform(config, train=False)

        def batch_of(chunk: list[int]) -> dict[str, torch.Tensor]:
            return {"inputs": torch.stack([transform(as_image(inputs[i], f"input {i + 1}")) for i in chunk])}  # (B, 3, S, S)

        def step(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list]:
            return batch["inputs"], model.decode(model(batch), top_k=top_k)

        results: list[dict[str, Any]] = []
        for chunk, (images, rows) in run_batches(model, ordered_chunks(list(range(len(inputs))), batch_size),
                                                 batch_of, step, EvalOptions()):
            for row in rows:
                top = [{"label": label, "probability": p} for label, p in row]
                results.append({"label": top[0]["label"], "probability": top[0]["probability"], "top": top})
            if explain_to is not None:
                heat, method = explain(model, images, explain_method)
                for number, image, heat_map in zip(chunk, images, heat):
                    path = Path(explain_to) / f"{number:03d}-{image_stem(inputs[number])}.png"
                    save_overlay(image, heat_map, config["mean"], config["std"], path, label=results[number]["label"],
                                 probability=results[number]["probability"], method=method)
                    results[number].update(explanation=str(path), explanation_method=method)
        return results

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--top-classes`` shown per image; ``--explain`` writes a heat-map PNG per image into ``--out``."""
        parser.add_argument("--top-classes", type=POSITIVE_INT, default=TOP_K, metavar="K",
                            help=f"classes shown per image (default {TOP_K})")
        parser.add_argument("--explain", action="store_true",
                            help="write a PNG per image: attention rollout (ViT) or gradient saliency")
        parser.add_argument("--out", default="explanations", help="folder for --explain pictures")

    def predict_options(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"top_k": args.top_classes, "explain_to": args.out if args.explain else None}

    def to_result(self, prediction: dict[str, Any]) -> Classification:
        return Classification(prediction["label"], prediction["probability"],
                              {entry["label"]: entry["probability"] for entry in prediction["top"]},
                              prediction.get("explanation"))

    def format_prediction(self, item: Any, prediction: dict[str, Any]) -> str:
        ranked = ", ".join(f"{entry['label']} {entry['probability']:.3f}" for entry in prediction["top"])
        explained = f"  [{prediction['explanation']}]" if "explanation" in prediction else ""
        return f"{item}: {ranked}{explained}"


def _same_size_pictures(pictures: list[Any]) -> bool:
    """Whether ``pictures`` are RGB PIL images of one size (what the batched pipeline stacks)."""
    first = pictures[0]
    return all(isinstance(p, Image.Image) and p.mode == "RGB" and p.size == first.size for p in pictures)


def _builtin_name(spec: str) -> str | None:
    """The built-in set a data SPEC names ("default" for plain ``builtin``), or None for files."""
    parsed = parse_spec(spec) if spec else None
    return (parsed.path or "default") if parsed is not None and parsed.is_builtin else None


def vit_defaults(name: str, size: int, is_default: bool, stem: str = "patch") -> dict[str, Any]:
    """``img_size``/``patch_size`` for our ViTs (+ :data:`SMALL_VIT` for the default on small images).

    A ``conv`` or ``spt`` stem gets at least 2-pixel patches, a ``conv`` one a power of 2 (7 -> 4 on
    Fashion-MNIST: a 7 x 7 grid instead of 4 x 4)."""
    if "patch_size" not in BACKBONES.meta(name).get("config", {}):
        return {}
    if size > SMALL_IMAGE:
        return {"img_size": size, "patch_size": LARGE_PATCH}
    patch = max(1, size // SMALL_GRID)
    if stem != "patch":
        patch = max(2, 1 << (patch.bit_length() - 1) if stem == "conv" else patch)
    return {"img_size": size, "patch_size": patch, **(SMALL_VIT if is_default else {})}


def _new_transform(size: int, builtin: str | None, backbone: torch.nn.Module, pretrained: bool) -> dict:
    """Preprocessing for a new model: timm's pretrained statistics, the built-in set's, or ImageNet's."""
    if pretrained and getattr(backbone, "mean", None):
        return default_transform_config(size, backbone.mean, backbone.std)
    if builtin is not None:
        return default_transform_config(**{**BUILTIN_IMAGE_STATS[builtin], "image_size": size})
    return default_transform_config(size, IMAGENET_MEAN, IMAGENET_STD)


def _transferred(args: argparse.Namespace, default_backbone: str) -> tuple[str, dict, dict]:
    """The backbone name, arguments and transform config of the ``--init-backbone`` checkpoint."""
    name, backbone_args, config, source = zoo_backbone(args.init_backbone, args.backbone, args.backbone_args,
                                                       default_backbone)
    transform = dict((config.get("preprocessing") or {}).get("transform") or {})
    if not transform:
        raise ValueError(f"{Path(source) / 'config.json'}: no preprocessing.transform; it is not an image "
                         "classification checkpoint (its normalisation is unknown)")
    if args.image_size and args.image_size != transform["image_size"]:
        transform.update(default_transform_config(args.image_size, transform["mean"], transform["std"],
                                                  transform["grayscale_source"]))
    return name, backbone_args, transform


def _augment_flags(args: argparse.Namespace, builtin: str | None) -> dict[str, Any]:
    """Transform fields from the flags, over the built-in set's augmentation defaults."""
    fields = dict(BUILTIN_AUGMENT.get(builtin, {})) if builtin else {}
    flags = {"augment": getattr(args, "augment", None), "hflip": getattr(args, "hflip", None),
             "mixup_alpha": getattr(args, "mixup", None), "cutmix_alpha": getattr(args, "cutmix", None)}
    fields.update({k: v for k, v in flags.items() if v is not None})
    if getattr(args, "crop_scale", None) is not None:
        fields["scale"] = [args.crop_scale, 1.0]
    return fields
