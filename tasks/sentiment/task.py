"""The sentiment Task: a text backbone + the classification head, trained from scratch or transferred.

From scratch, a sentencepiece tokenizer is trained on the training texts and saved with the
checkpoint. With ``--pretrained RUN_DIR`` (alias ``--init-backbone``, a trainer flag) the backbone
is rebuilt exactly as that checkpoint describes it (registry name and arguments, e.g. the
text-generation task's causal decoder) with that checkpoint's tokenizer; the trainer then copies
its weights in. ``--pretrained wordllama`` (a catalog name) or a transformers folder: the backbone
comes from ``zoo.create_model(pretrained=...)`` with the source's tokenizer (a catalog token
embedding goes into a new ``--backbone`` as wide as its table, learned positions; fine-tuned
unless ``--freeze-embedding`` or ``--freeze-backbone``). A causal backbone is pooled at its last
token (the classification head's ``pool="auto"``), so texts get an EOS appended: that last
position has read the whole sentence.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

import zoo
from tasks.engine.attributions import token_embedding
from tasks.engine.flags import DROP_FRACTION, POSITIVE_INT, VOCAB_SIZE
from tasks.engine.pretrained import FLAG, checkpoint_tokenizer, source_kind, zoo_backbone
from tasks.engine.task import Metric, Task
from tasks.sentiment.builtin import BUILTIN_SETS
from tasks.engine.evaluation import EvalOptions, label_mapping
from tasks.engine.confusion import CONFUSION_PNG
from tasks.sentiment.evaluation import classify, metrics
from tasks.sentiment.formats import FORMATS
from zoo.errors import ZooError
from zoo.results import Classification
from zoo.tokenizer import BaseTokenizer, Tokenizer, pad_ids

REGULARIZATION: dict[str, Any] = dict(dropout=0.3)      # backbone and head, new or transferred
NEW_BACKBONE: dict[str, Any] = dict(position="learned")  # a new backbone's positions (BERT's layout)


@zoo.register_task("sentiment")
class SentimentTask(Task):
    """Label texts (reviews, sentences) with a class such as negative/positive; primary metric accuracy."""

    name = "sentiment"
    modality = "text"
    default_backbone = "text_encoder_tiny"
    default_head = "classification"
    metric = Metric("accuracy", higher_is_better=True)
    # the demo: two full epochs (the cosine ends with them, ~50 s) at a higher peak
    demo_args = ("--time-budget", "60", "--epochs", "2", "--lr", "2e-3", "--eval-every", "0")
    pretrained_kinds = ("catalog", "zoo", "weights")
    train_defaults = dict(batch_size=32, lr=1e-3, weight_decay=0.1, epochs=4, eval_every=125)
    formats = FORMATS
    builtin_sets = BUILTIN_SETS
    quick_set = "default"
    explain_field = "text"
    evaluation_pictures = (CONFUSION_PNG,)

    # ---- data -------------------------------------------------------------------------
    def make_collate(self, model: torch.nn.Module, train: bool) -> Callable[[list[dict]], dict]:
        token_dropout = model.preprocessing.get("token_dropout", 0.0) if train else 0.0

        def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
            inputs, mask = encode(model, [s["text"] for s in samples])
            if token_dropout > 0:         # word dropout: hide random tokens behind <unk>
                hidden = (torch.rand(inputs.shape) < token_dropout) & mask & (inputs != model.tokenizer.eos_id)
                inputs = inputs.masked_fill(hidden, model.tokenizer.unk_id)
            batch = {"inputs": inputs, "mask": mask}
            if "label" in samples[0]:       # texts to predict have none
                batch["labels"] = torch.tensor([s["label"] for s in samples])
            return batch

        return collate

    def sample_length(self, sample: dict) -> int:
        """Characters of the text: training batches hold texts of similar length (less padding)."""
        return len(sample["text"])

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--vocab-size``, ``--max-len``, ``--token-dropout``; sets this task's training defaults (4 epochs...)."""
        group = parser.add_argument_group("sentiment")
        group.add_argument("--vocab-size", type=VOCAB_SIZE, default=8000,
                           help="tokenizer vocabulary trained from scratch (ignored with --pretrained)")
        group.add_argument("--max-len", type=POSITIVE_INT, default=128, help="tokens kept per text")
        group.add_argument("--token-dropout", type=DROP_FRACTION, default=0.15,
                           help="while training, replace this fraction of tokens by <unk> (word dropout)")
        group.add_argument("--freeze-embedding", action="store_true",
                           help="keep the token embedding as it came (e.g. --pretrained wordllama's table) and "
                                "train the rest; --freeze-backbone freezes the whole backbone")
        super().add_arguments(parser)

    def build_model(self, args: argparse.Namespace, train_set: Dataset) -> zoo.ZooModel:
        """Tokenizer + backbone (new, from ``--pretrained``, or the architecture of a zoo checkpoint) + head."""
        head_args = self.head_spec(args, train_set)["args"]
        source = getattr(args, "init_backbone", None)
        if source and source_kind(source) != "zoo":
            model = self._pretrained(args, source, head_args)
        else:
            name, backbone_args, tokenizer = self._transferred(args) if source else self._new(args, train_set)
            model = zoo.create_model(name, args.head or self.default_head, backbone_args=backbone_args,
                                     tokenizer=tokenizer, task=self.name, **head_args)
        backbone = model.backbone
        self.check_backbone(backbone, args.backbone or source)
        model.preprocessing.update(self.preprocessing(args, backbone))
        if getattr(args, "freeze_embedding", False):
            token_embedding(model, "--freeze-embedding").requires_grad_(False)
        return model

    def texts(self, dataset: Dataset) -> list[str]:
        """Every sample's text."""
        return [dataset[i]["text"] for i in range(len(dataset))]

    def head_spec(self, args: argparse.Namespace, train_set: Dataset) -> dict[str, Any]:
        """The classification head (or ``--head``) over the training set's classes, regularised."""
        labels = list(train_set.classes)
        return {"name": args.head or self.default_head,
                "args": {**REGULARIZATION, **(args.head_args or {}), "num_classes": len(labels), "labels": labels}}

    def preprocessing(self, args: argparse.Namespace, backbone: torch.nn.Module) -> dict[str, Any]:
        """``max_len`` (within a learned-position backbone's positions), ``eos`` (appended for a causal
        backbone, whose last token then pools the whole text) and ``token_dropout``."""
        max_len = args.max_len
        if getattr(backbone, "pos_embed", None) is not None:
            max_len = min(max_len, backbone.pos_embed.num_embeddings)
        return {"max_len": max_len, "eos": bool(backbone.causal), "token_dropout": args.token_dropout}

    def _pretrained(self, args: argparse.Namespace, source: str, head_args: dict[str, Any]) -> zoo.ZooModel:
        """The model whose backbone ``zoo.create_model(pretrained=source)`` builds, with the source's tokenizer."""
        name = args.backbone or self.default_backbone
        backbone_args = args.backbone_args
        if source_kind(source) == "catalog":     # a token table: a new encoder around it, as from scratch
            defaults = {**NEW_BACKBONE, "max_len": args.max_len, **REGULARIZATION}
            backbone_args = self.backbone_args(name, defaults, args.backbone_args)
        elif args.backbone is None:
            name = None     # a transformers folder says its architecture
        model = zoo.create_model(name, args.head or self.default_head, pretrained=source,
                                 backbone_args=backbone_args, task=self.name, **head_args)
        if model.tokenizer is None:
            raise ZooError(f"{FLAG} {source} brings no tokenizer (a transformers folder's tokenizer.json); "
                           f"sentiment needs the ids its backbone was trained on")
        return model

    def _new(self, args: argparse.Namespace, train_set: Dataset) -> tuple[str, dict, Tokenizer]:
        tokenizer = Tokenizer.train(self.texts(train_set), vocab_size=args.vocab_size)
        name = args.backbone or self.default_backbone
        defaults = {"vocab_size": tokenizer.vocab_size, **NEW_BACKBONE, "max_len": args.max_len, **REGULARIZATION}
        return name, self.backbone_args(name, defaults, args.backbone_args), tokenizer

    def _transferred(self, args: argparse.Namespace) -> tuple[str, dict, BaseTokenizer]:
        """The backbone name, arguments and tokenizer of the ``--init-backbone`` checkpoint.

        ``--backbone-args`` still apply on top (e.g. ``{"dropout": 0.1}``); shapes they change
        are then not loaded, which the trainer reports.
        """
        name, stored_args, config, folder = zoo_backbone(args.init_backbone, args.backbone, None)
        tokenizer = checkpoint_tokenizer(folder, config, "sentiment texts")
        backbone_args = {**stored_args, **self.backbone_args(name, REGULARIZATION, args.backbone_args)}
        return name, backbone_args, tokenizer

    # ---- evaluation and prediction -----------------------------------------------------
    eval_batch_size = 64

    def evaluate(self, model: torch.nn.Module, dataset: Dataset, options: EvalOptions) -> dict[str, float]:
        """Accuracy, macro-F1 and loss; the confusion matrix goes to ``options.out`` when set."""
        labels = model.head.labels
        samples = [dataset[i] for i in range(len(dataset))]
        logits = classify(model, samples, self.make_collate(model, train=False),
                          options.batch_size or self.eval_batch_size, options)
        mapping = label_mapping(dataset.classes, labels, getattr(dataset, "source", "data set"))
        target = mapping[torch.tensor([s["label"] for s in samples], dtype=torch.long)]
        return metrics(logits, target, labels, options.out, options.subject())

    def predict(self, model: torch.nn.Module, inputs: Sequence[str], batch_size: int = 64,
                **options: Any) -> list[dict[str, Any]]:
        """Per text ``{"label", "probability", "probabilities": {label: p}}``."""
        for number, text in enumerate(inputs, 1):
            if not text.strip():
                raise ValueError(f"input {number} is an empty text")
        logits = classify(model, [{"text": t} for t in inputs], self.make_collate(model, train=False), batch_size)
        labels = model.head.labels
        return [{"label": labels[row.index(max(row))], "probability": max(row), "probabilities": dict(zip(labels, row))}
                for row in logits.softmax(dim=-1).tolist()]

    def to_result(self, prediction: dict[str, Any]) -> Classification:
        return Classification(prediction["label"], prediction["probability"], dict(prediction["probabilities"]))

    def format_prediction(self, item: Any, prediction: dict[str, Any]) -> str:
        return f"{prediction['label']}\t{prediction['probability']:.3f}\t{item}"


def encode(model: zoo.ZooModel, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, T) and mask (B, T) of texts, as the model's ``preprocessing`` says."""
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer; sentiment models store the one they were trained with")
    eos = [model.tokenizer.eos_id] if model.preprocessing.get("eos", False) else []
    keep = model.preprocessing.get("max_len", 10**9) - len(eos)    # a long text keeps its EOS
    return pad_ids([model.tokenizer.encode(text)[:keep] + eos for text in texts], model.tokenizer.pad_id)
