"""The translation Task: a bidirectional text encoder + the seq2seq decoder head.

Defaults (``zoo train translation``) are sized for a 2-core CPU and a 20-minute budget, where
a small model seeing more sentences beats a large one seeing fewer: ``text_encoder_tiny`` (dim
128, 2 layers) and a 3-layer decoder of the same width, sharing one joint 4,000-piece
sentencepiece vocabulary (and so one embedding matrix: encoder input, decoder input and output
projection; a small vocabulary keeps the output softmax from dominating a narrow model), fp32
(bf16 autocast is slower than fp32 on CPUs without bf16 matrix units), batches of 32 pairs of
similar length (more updates per sentence seen learn faster in a short budget), peak learning
rate 2e-3, evaluation with beam 4. Scale up with ``--backbone text_encoder_small
--head-args '{"depth": 4}' --vocab-size 8000`` where compute allows. The primary metric is
corpus BLEU on detokenized text (sacrebleu), with chrF and exact match beside it.
``--pretrained`` a transformers Marian folder wraps its encoder as the backbone under our seq2seq
head (a new decoder); the folder's ``tokenizer.json`` reads both sides (one joint vocabulary).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

import zoo
from tasks.engine.evaluation import EvalOptions
from tasks.engine.flags import POSITIVE_INT, VOCAB_SIZE
from tasks.engine.pretrained import FLAG, checkpoint_tokenizer, source_kind, zoo_backbone
from tasks.engine.task import Metric, Task
from tasks.translation.builtin import BUILTIN_SETS
from tasks.translation.evaluation import scores, translate
from tasks.translation.formats import FORMATS
from tasks.translation.vocab import PairCollate, collate_for, preprocessing, train_tokenizers
from zoo.errors import ZooError
from zoo.results import Translation
from zoo.texts import DEFAULT_MAX_LEN, target_tokenizer
from zoo.tokenizer import HF_TOKENIZER_FILE, BaseTokenizer, HFTokenizer, Tokenizer


@zoo.register_task("translation")
class TranslationTask(Task):
    """Translate sentences (English -> Spanish Bible verses by default); primary metric BLEU."""

    name = "translation"
    modality = "text"
    default_backbone = "text_encoder_tiny"
    default_head = "seq2seq"
    metric = Metric("bleu", higher_is_better=True)
    pretrained_kinds = ("zoo", "marian")
    train_defaults = dict(batch_size=32, lr=2e-3, warmup_steps=200)
    head_defaults = {"seq2seq": dict(depth=3, heads=2)}
    formats = FORMATS
    builtin_sets = BUILTIN_SETS
    quick_set = "numbers"
    explain_field = "source"
    generates = True
    text_result = Translation

    # ---- data -------------------------------------------------------------------------
    def make_collate(self, model: torch.nn.Module, train: bool) -> PairCollate:
        return collate_for(model)

    def sample_length(self, sample: dict) -> int:
        """Characters of the pair: training batches hold pairs of similar length."""
        return len(sample["source"]) + len(sample["target"])

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Vocabulary, length and evaluation flags; sets this task's training defaults."""
        group = parser.add_argument_group("translation")
        group.add_argument("--vocab-size", type=VOCAB_SIZE, default=4000,
                           help="sentencepiece pieces (per side with --separate-vocab)")
        group.add_argument("--separate-vocab", action="store_true",
                           help="one tokenizer per side instead of one joint model (no embedding sharing)")
        group.add_argument("--max-len", type=POSITIVE_INT, default=DEFAULT_MAX_LEN, help="tokens kept per sentence")
        group.add_argument("--eval-beams", type=POSITIVE_INT, default=4,
                           help="beam size of evaluation, in training and `zoo eval` (1 = greedy, about 2x faster)")
        super().add_arguments(parser)

    def build_model(self, args: argparse.Namespace, train_set: Dataset) -> zoo.ZooModel:
        """Tokenizer(s) + encoder backbone + seq2seq head; ``--init-backbone`` reuses that model's encoder and vocabulary."""
        source = getattr(args, "init_backbone", None)
        if source and source_kind(source) == "weights":
            return self._pretrained(args, source)
        if source:
            name, backbone_args, source_tok, target_tok = self._transferred(args, train_set)
        else:
            source_tok, target_tok = train_tokenizers(_pairs(train_set), args.vocab_size, args.separate_vocab)
            name = args.backbone or self.default_backbone
            backbone_args = self.backbone_args(name, {"vocab_size": source_tok.vocab_size}, args.backbone_args)
        backbone = zoo.create_backbone(name, **backbone_args)
        self.check_backbone(backbone, name)
        head = args.head or self.default_head
        head_args = self.head_args(head, {"vocab_size": target_tok.vocab_size, **(args.head_args or {})})
        head_args.setdefault("share_embedding", _can_share(backbone, source_tok, target_tok, head_args))
        head = zoo.create_head(head, backbone, **head_args)
        return zoo.ZooModel(backbone, head, source_tok, preprocessing(source_tok, target_tok, args.max_len),
                            task=self.name)

    def _pretrained(self, args: argparse.Namespace, source: str) -> zoo.ZooModel:
        """The wrapped encoder of Marian folder ``source`` + a new seq2seq head over its ``tokenizer.json``'s ids."""
        path = Path(source) / HF_TOKENIZER_FILE
        if not path.is_file():
            raise ZooError(f"{FLAG} {source} has no {HF_TOKENIZER_FILE}; translation reads both sides with the "
                           f"model's own tokenizer (save a fast tokenizer beside the weights)")
        if args.separate_vocab:
            raise ZooError(f"--separate-vocab conflicts with {FLAG} {source}: its {HF_TOKENIZER_FILE} reads both sides")
        tokenizer = HFTokenizer.load(path)
        head = args.head or self.default_head
        head_args = self.head_args(head, {"vocab_size": tokenizer.vocab_size, **(args.head_args or {})})
        return zoo.create_model(None, head, pretrained=source, tokenizer=tokenizer,
                                preprocessing=preprocessing(tokenizer, tokenizer, args.max_len), task=self.name,
                                **head_args)

    def _transferred(self, args: argparse.Namespace,
                     train_set: Dataset) -> tuple[str, dict, BaseTokenizer, BaseTokenizer]:
        """Backbone name/arguments and tokenizers of the ``--init-backbone`` checkpoint.

        A translation checkpoint brings both tokenizers; any other text model brings its source
        tokenizer, and a target tokenizer is trained on the targets.
        """
        name, backbone_args, config, folder = zoo_backbone(args.init_backbone, args.backbone, args.backbone_args)
        source_tok = checkpoint_tokenizer(folder, config, "text")
        if config.get("task") == self.name:
            target_tok = target_tokenizer(source_tok, config.get("preprocessing") or {})
        else:
            target_tok = Tokenizer.train([t for _, t in _pairs(train_set)], args.vocab_size)
        return name, backbone_args, source_tok, target_tok

    # ---- evaluation and prediction -----------------------------------------------------
    def evaluate(self, model: torch.nn.Module, dataset: Dataset, options: EvalOptions) -> dict[str, float]:
        """Corpus BLEU, chrF and exact match of the translations of every source (beam ``--eval-beams``)."""
        pairs = _pairs(dataset)
        hypotheses = translate(model, [s for s, _ in pairs], batch_size=options.batch_size or self.eval_batch_size,
                               options=options, beams=options.beams)
        return scores(hypotheses, [t for _, t in pairs])

    def predict(self, model: torch.nn.Module, inputs: Sequence[str], batch_size: int = 32,
                **options: Any) -> list[str]:
        """Translations of the texts; ``options`` are generation options (``beams``, ``max_new_tokens``...)."""
        return translate(model, list(inputs), batch_size=batch_size, **options)

    def decoded_samples(self, model: torch.nn.Module, dataset: Dataset, count: int = 3) -> list[str]:
        """The first ``count`` pairs: source, greedy translation, reference."""
        pairs = _pairs(dataset)[:count]
        translations = self.predict(model, [source for source, _ in pairs])
        return [f"{source}\n-> {hypothesis}\n(reference: {target})"
                for (source, target), hypothesis in zip(pairs, translations)]

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--max-new-tokens`` defaults to a budget sized from each batch's sources."""
        parser.set_defaults(max_new_tokens=None)
        parser.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="sentences translated together")


def _pairs(dataset: Dataset) -> list[tuple[str, str]]:
    """(source, target) pairs of a data set (``.pairs`` when it has them, else item by item)."""
    pairs = getattr(dataset, "pairs", None)
    if pairs is None:
        pairs = [(item["source"], item["target"]) for item in (dataset[i] for i in range(len(dataset)))]
    return pairs


def _can_share(backbone: torch.nn.Module, source_tok: Tokenizer, target_tok: Tokenizer,
               head_args: dict[str, Any]) -> bool:
    """Share the encoder's embedding with the decoder: one joint vocabulary, same width."""
    embed = getattr(backbone, "embed", None)
    return (source_tok is target_tok and isinstance(embed, torch.nn.Embedding)
            and embed.num_embeddings == head_args["vocab_size"]
            and head_args.get("dim", backbone.dim) in (None, backbone.dim))
