"""The detection Task: an image backbone's feature pyramid + a dense (FCOS) or set-prediction (DETR) head.

The preprocessing stored with a model is ``mean``/``std`` (the backbone's normalisation) and
``transform``: the box-aware augmentation config of :mod:`tasks.detection.transforms`
(``size``/``max_size`` resize at evaluation and prediction as well; the rest only in
training). Every collate, ``zoo eval`` and ``zoo predict`` rebuild the pipeline from it.

Defaults, chosen for a 15-minute ``--time-budget`` on a 2-core CPU (see the README for what
they reach): ``timm/mobilenetv3_small_100`` (random init; the cheapest timm backbone with maps
at strides 8/16/32 among those we timed: 2.6x the training images/s of a ResNet-18 under the
same head) with the ``fcos`` head at 64 channels (the head costs more than this backbone), AdamW
at 2e-3 with 30 warm-up steps, batch 8 (more updates per image seen), and the cosine schedule
over the time budget, evaluating every 400 steps. Augmentation is the horizontal flip only: in
a budget of a few epochs scale and colour jitter cost data time and slow convergence; turn
them on with ``--transform '{"scale_range": [0.8, 1.2], "color_jitter": 0.2}'`` for long runs.
Our ViT gets ``img_size=128, patch_size=8`` (maps at strides 8, 16, 32) unless
``--backbone-args`` say otherwise. ``--pretrained`` a transformers ViT folder or a timm ViT
``.safetensors`` file or hub folder converts it into our ``vit_*``, whose pyramid (maps at
strides p, 2p, 4p, the up/down-sampling layers new) feeds the head; images are normalised with
the mean/std the source records (else ImageNet's).
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

import zoo
from tasks.detection.builtin import BUILTIN_SETS
from tasks.detection.evaluation import DRAWINGS, coco_metrics
from tasks.detection.formats import FORMATS
from tasks.detection.predict import predict_files
from tasks.detection.transforms import DEFAULT_CONFIG, build_detection_transform, collate_detection
from tasks.engine.evaluation import EvalOptions, label_mapping
from tasks.engine.flags import POSITIVE_INT, PROBABILITY, json_object
from tasks.engine.images import stored_transform
from tasks.engine.pretrained import source_kind
from tasks.engine.task import Metric, Task
from zoo.backbones.vision import IMAGENET_MEAN, IMAGENET_STD
from zoo.registry import BACKBONES
from zoo.results import Detection

VIT_DEFAULTS: dict[str, Any] = dict(img_size=128, patch_size=8)
TRANSFORM_DEFAULTS: dict[str, Any] = dict(scale_range=[1.0, 1.0], color_jitter=0.0)  # hflip only: see the docstring
HEAD_DEFAULTS: dict[str, dict[str, Any]] = {"fcos": {"dim": 64}, "detr": {"dim": 128, "heads": 4, "depth": 3}}


@zoo.register_task("detection")
class DetectionTask(Task):
    """Find objects in images: boxes, class labels and scores; primary metric COCO mAP@.5."""

    name = "detection"
    modality = "image"
    default_backbone = "timm/mobilenetv3_small_100"
    default_head = "fcos"
    metric = Metric("map_50", higher_is_better=True)
    pretrained_kinds = ("zoo", "vit", "timm_vit")
    formats = FORMATS
    builtin_sets = BUILTIN_SETS
    quick_set = "small"
    explain_field = "path"
    evaluation_pictures = (f"{DRAWINGS}/*.png",)
    train_defaults = dict(batch_size=8, lr=2e-3, time_budget=900.0, eval_every=400, warmup_steps=30)
    head_defaults = HEAD_DEFAULTS
    demo_args = ("--time-budget", "60", "--eval-every", "0")

    # ---- data -------------------------------------------------------------------------
    def make_collate(self, model: torch.nn.Module, train: bool) -> Callable[[list[dict]], dict]:
        """Box-aware transform of each sample (augmenting when ``train``), then pad + normalise."""
        pre = model.preprocessing
        transform = build_detection_transform(stored_transform(model, self.name), train)

        def collate(samples: list[dict]) -> dict[str, Any]:
            return collate_detection([transform(s) for s in samples], pre["mean"], pre["std"])

        return collate

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--transform JSON`` (augmentation/resize overrides); sets this task's training defaults."""
        group = parser.add_argument_group("detection")
        group.add_argument("--transform", type=json_object, default=None, metavar="JSON",
                           help=f"transform options over {json.dumps({**DEFAULT_CONFIG, **TRANSFORM_DEFAULTS})}")
        super().add_arguments(parser)

    def build_model(self, args: argparse.Namespace, train_set: Dataset) -> zoo.ZooModel:
        """Backbone (ViT sized for the scenes, or the ``--pretrained`` ViT) + head for the training set's
        classes + preprocessing."""
        head_name = args.head or self.default_head
        labels = list(train_set.classes)
        head_args = {**self.head_args(head_name, args.head_args), "num_classes": len(labels), "labels": labels}
        transform = {**DEFAULT_CONFIG, **TRANSFORM_DEFAULTS, **(getattr(args, "transform", None) or {})}
        build_detection_transform(transform, train=True)  # unknown keys fail now, not in the first batch
        source = getattr(args, "init_backbone", None)
        if source and source_kind(source) == "weights":
            model = zoo.create_model(args.backbone, head_name, pretrained=source, backbone_args=args.backbone_args,
                                     task=self.name, **head_args)
            mean, std = model.preprocessing.get("mean", IMAGENET_MEAN), model.preprocessing.get("std", IMAGENET_STD)
        else:
            name = args.backbone or self.default_backbone
            backbone = zoo.create_backbone(name, **self.backbone_args(name, VIT_DEFAULTS, args.backbone_args))
            self.check_backbone(backbone, name)
            model = zoo.ZooModel(backbone, zoo.create_head(head_name, backbone, **head_args), task=self.name)
            mean = getattr(backbone, "mean", None) or BACKBONES.meta(name).get("mean") or IMAGENET_MEAN
            std = getattr(backbone, "std", None) or BACKBONES.meta(name).get("std") or IMAGENET_STD
        model.preprocessing = {"mean": list(mean), "std": list(std), "transform": transform}
        return model

    # ---- evaluation and prediction -----------------------------------------------------
    def evaluate(self, model: torch.nn.Module, dataset: Dataset, options: EvalOptions) -> dict[str, float]:
        """COCO ``map``, ``map_50``, ``map_75``, ``mar_100`` on ``dataset``."""
        mapping = label_mapping(list(dataset.classes), model.head.labels, getattr(dataset, "source", "data set"))
        samples = (dataset[i] for i in range(len(dataset)))
        return coco_metrics(model, samples, self.make_collate(model, train=False),
                            options.batch_size or self.eval_batch_size, options, mapping)

    def predict(self, model: torch.nn.Module, inputs: Sequence[str], score_threshold: float = 0.3,
                max_detections: int = 100, out: str | None = None, batch_size: int = 8,
                **options: Any) -> list[dict[str, Any]]:
        """Per image file: ``detections`` (label, score, box in the file's pixels), its size and, with ``out``,
        the ``drawn`` PNG."""
        return predict_files(model, inputs, self.make_collate(model, train=False), model.head.labels,
                             batch_size=batch_size, score_threshold=score_threshold,
                             max_detections=max_detections, out=out)

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("detection")
        group.add_argument("--out", default=None, help="folder for the images with their boxes drawn (PNG)")
        group.add_argument("--score-threshold", type=PROBABILITY, default=0.3, help="drop detections scored below this")
        group.add_argument("--max-detections", type=POSITIVE_INT, default=100, help="at most this many boxes per image")
        group.add_argument("--batch-size", type=POSITIVE_INT, default=8, help="images per batch")

    def predict_options(self, args: argparse.Namespace) -> dict[str, Any]:
        return {key: getattr(args, key) for key in ("out", "score_threshold", "max_detections", "batch_size")}

    def to_result(self, prediction: dict[str, Any]) -> Detection:
        found = prediction["detections"]
        return Detection(tuple(tuple(d["box"]) for d in found), tuple(d["label"] for d in found),
                         tuple(d["score"] for d in found), prediction["width"], prediction["height"],
                         prediction.get("drawn"))

    def format_prediction(self, item: Any, prediction: dict[str, Any]) -> str:
        return json.dumps({"input": item, **prediction}, ensure_ascii=False)
