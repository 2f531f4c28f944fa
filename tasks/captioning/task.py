"""The captioning Task: an image backbone (our ``vit_*`` or any ``timm/<name>``) + the seq2seq decoder head.

The decoder cross-attends to the backbone's tokens (a ViT's class and patch tokens; a timm
model's last feature map flattened). Captions are read with a sentencepiece tokenizer trained on
the training captions (stored with the model); the preprocessing stored with a model is
``transform`` (the image classification eval pipeline: resize, centre crop, normalise; no
augmentation, not even flips: captions say left and right) and ``max_len`` (tokens kept per
caption, EOS included; also the default generation budget).

Defaults, sized for a 2-core CPU and a 10-minute ``--time-budget``: ``vit_tiny`` shrunk to dim
128, 4 layers, 4 heads, with 16-pixel patches at the built-in set's image size (8x8 patches on the
128-pixel scenes) and a 2-layer decoder of the same width; AdamW at 1e-3 with 100 warm-up steps,
batches of 32, greedy decoding in evaluation (``--eval-beams`` for beam search). The primary metric
is corpus BLEU (sacrebleu) against every reference caption; ``zoo eval`` on a validation or test
split also prints the nearest-neighbour baseline (``baseline_bleu``...,
:mod:`tasks.captioning.evaluation`).
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

import zoo
from tasks.captioning.builtin import BUILTIN_SETS
from tasks.captioning.evaluation import baseline_scores, caption_batches, caption_dataset
from tasks.captioning.formats import FORMATS
from tasks.engine.evaluation import EvalOptions
from tasks.engine.flags import POSITIVE_INT, VOCAB_SIZE
from tasks.engine.images import as_image, stored_transform
from tasks.engine.task import Metric, Task
from tasks.image_classification.transforms import build_transform, default_transform_config
from tasks.translation.evaluation import scores
from zoo.backbones.vision import IMAGENET_MEAN, IMAGENET_STD
from zoo.errors import ZooError
from zoo.registry import BACKBONES
from zoo.tokenizer import Tokenizer

VIT_DEFAULTS: dict[str, Any] = dict(dim=128, depth=4, heads=4, patch_size=16)   # the default vit_tiny, shrunk
MAX_AUTO_SIZE = 224
DEFAULT_MAX_LEN = 96   # the built-in captions reach 81 tokens: 48 cut 1,554 of 4,000 and their decodes stopped mid-item
# the eval pipeline only: resize the shorter side, centre crop, normalise (no flips: captions say left/right)
NO_AUGMENTATION: dict[str, Any] = dict(interpolation="bilinear", crop_pct=1.0, scale=[1.0, 1.0], hflip=0.0,
                                       augment="none")


@zoo.register_task("captioning")
class CaptioningTask(Task):
    """Describe images in a sentence (built-in: which items, where, on what); primary metric BLEU."""

    name = "captioning"
    modality = "image"
    default_backbone = "vit_tiny"
    default_head = "seq2seq"
    metric = Metric("bleu", higher_is_better=True)
    generates = True
    train_defaults = dict(batch_size=32, lr=1e-3, warmup_steps=100, eval_every=500)
    head_defaults = {"seq2seq": dict(depth=2, heads=4)}
    formats = FORMATS
    builtin_sets = BUILTIN_SETS
    quick_set = "small"
    explain_field = ""
    demo_args = ("--time-budget", "60", "--eval-every", "0")

    # ---- data -------------------------------------------------------------------------
    def make_collate(self, model: torch.nn.Module, train: bool) -> Callable[[list[dict]], dict]:
        """Samples -> ``{"inputs": (B, 3, S, S), "targets"/"target_mask": (B, L)}``: in training one of each
        image's references at random, else its first."""
        transform = build_transform(stored_transform(model, self.name), train=False)
        tokenizer, max_len = model.tokenizer, int(model.preprocessing.get("max_len", DEFAULT_MAX_LEN))

        def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
            images = torch.stack([transform(sample["image"]) for sample in samples])  # (B, 3, S, S)
            captions = [s["captions"][int(torch.randint(len(s["captions"]), ())) if train else 0] for s in samples]
            targets, target_mask = tokenizer.batch(captions, max_len=max_len - 1)  # (B, L): room for the EOS
            return {"inputs": images, "targets": targets, "target_mask": target_mask}

        return collate

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Vocabulary, caption length, image size and evaluation flags; sets this task's training defaults."""
        group = parser.add_argument_group("captioning")
        group.add_argument("--vocab-size", type=VOCAB_SIZE, default=512,
                           help="sentencepiece pieces at most (a small caption vocabulary gives fewer)")
        group.add_argument("--max-len", type=POSITIVE_INT, default=DEFAULT_MAX_LEN,
                           help="tokens kept per caption, EOS included (and generated at most)")
        group.add_argument("--image-size", type=POSITIVE_INT, default=None,
                           help=f"input side in pixels (default: the first training image's shorter side, "
                                f"<= {MAX_AUTO_SIZE})")
        group.add_argument("--eval-beams", type=POSITIVE_INT, default=1,
                           help="beam size of evaluation, in training and `zoo eval` (1 = greedy)")
        super().add_arguments(parser)

    def build_model(self, args: argparse.Namespace, train_set: Dataset) -> zoo.ZooModel:
        """A tokenizer trained on the training captions + image backbone + generating head + preprocessing."""
        records = getattr(train_set, "records", None)
        captions = ([c for r in records for c in r.captions] if records is not None
                    else [c for i in range(len(train_set)) for c in train_set[i]["captions"]])
        tokenizer = Tokenizer.train(captions, args.vocab_size)
        size = args.image_size or min(MAX_AUTO_SIZE, min(train_set[0]["image"].shape[1:]))
        name = args.backbone or self.default_backbone
        defaults = {**(VIT_DEFAULTS if name == self.default_backbone else {"patch_size": 16}), "img_size": size}
        backbone = zoo.create_backbone(name, **self.backbone_args(name, defaults, args.backbone_args))
        self.check_backbone(backbone, name)
        head_name = args.head or self.default_head
        head = zoo.create_head(head_name, backbone,
                               **self.head_args(head_name, {"vocab_size": tokenizer.vocab_size, **(args.head_args or {})}))
        if not hasattr(head, "init_state"):
            raise ZooError(f"--head {head_name}: captioning generates text through the step protocol "
                           f"(init_state/step), which this head lacks; use --head seq2seq")
        mean = getattr(backbone, "mean", None) or BACKBONES.meta(name).get("mean") or IMAGENET_MEAN
        std = getattr(backbone, "std", None) or BACKBONES.meta(name).get("std") or IMAGENET_STD
        transform = {**default_transform_config(size, mean, std), **NO_AUGMENTATION}
        return zoo.ZooModel(backbone, head, tokenizer, {"transform": transform, "max_len": args.max_len},
                            task=self.name)

    # ---- evaluation and prediction -----------------------------------------------------
    def evaluate(self, model: torch.nn.Module, dataset: Dataset, options: EvalOptions) -> dict[str, float]:
        """Corpus ``bleu``, ``chrf``, ``exact_match`` of the captions (beam ``--eval-beams``) and, on a
        validation or test split, the nearest-neighbour baseline's (``baseline_bleu``...)."""
        hypotheses, references = caption_dataset(model, dataset, options.batch_size or self.eval_batch_size,
                                                 options, beams=options.beams)
        return {**scores(hypotheses, references), **baseline_scores(dataset)}

    def predict(self, model: torch.nn.Module, inputs: Sequence[Any], batch_size: int = 32,
                **options: Any) -> list[str]:
        """The caption of each image (a file path, a PIL image, an (H, W, 3) uint8 array or a (3, H, W)
        tensor); ``options`` are generation options (``beams``, ``max_new_tokens``, ``temperature``...)."""
        return caption_batches(model, len(inputs), lambda i: as_image(inputs[i], f"input {i + 1}"), batch_size,
                               **options)

    def decoded_samples(self, model: torch.nn.Module, dataset: Dataset, count: int = 3) -> list[str]:
        """The first ``count`` images: file, greedy caption, first reference."""
        samples = [dataset[i] for i in range(min(count, len(dataset)))]
        captions = caption_batches(model, len(samples), lambda i: samples[i]["image"], count)
        return [f"{s['path']}\n-> {caption}\n(reference: {s['captions'][0]})" for s, caption in zip(samples, captions)]

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--max-new-tokens`` defaults to the model's ``max_len``; ``--batch-size`` images per batch."""
        parser.set_defaults(max_new_tokens=None)
        parser.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="images captioned together")

    def format_prediction(self, item: Any, prediction: str) -> str:
        """The image, a tab and its caption."""
        return f"{item}\t{prediction}"
