"""The text-generation Task: a causal text decoder + the LM head, trained on packed token blocks.

A sentencepiece tokenizer is trained from the training documents (``--vocab-size``,
``--tokenizer-type``) unless ``--tokenizer`` gives one; it is saved with every checkpoint, and
the block size (``--block-size``) goes into the model's preprocessing. ``--pretrained`` a
transformers GPT-2 folder converts it into ``text_decoder_gpt2`` + ``lm`` and tokenizes with the
folder's ``tokenizer.json`` instead of training one. Documents are packed
into blocks of ``block_size + 1`` tokens (:mod:`tasks.text_generation.blocks`); a batch is
``inputs`` (B, T) and ``targets`` (B, T), the same tokens shifted by one. Metrics: ``loss``
(nats per token), ``perplexity`` and the primary ``bits_per_char``, on the characters of the
raw text (:mod:`tasks.text_generation.metrics`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

import zoo
from tasks.engine.batching import ordered_chunks
from tasks.engine.checkpoints import resolve_checkpoint
from tasks.engine.evaluation import EvalOptions
from tasks.engine.flags import POSITIVE_INT, VOCAB_SIZE
from tasks.engine.pretrained import FLAG, source_kind
from tasks.engine.task import Metric, Task
from tasks.text_generation.blocks import TextBlocks
from tasks.text_generation.builtin import BUILTIN_SETS
from tasks.text_generation.formats import FORMATS, TextDataset
from tasks.text_generation.metrics import evaluate_blocks
from tasks.text_generation.prompts import stream_text
from zoo.errors import ZooError
from zoo.texts import continue_texts, position_limit
from zoo.tokenizer import TOKENIZER_FILE, BaseTokenizer, Tokenizer

SAMPLE_PROMPT, SAMPLE_TOKENS = 40, 48   # the decoded samples of the run's logs: prompt characters, new tokens


@zoo.register_task("text_generation")
class TextGenerationTask(Task):
    """Continue a text; trained as a next-token language model, measured in bits per character."""

    name = "text_generation"
    modality = "text"
    default_backbone = "text_decoder_tiny"
    default_head = "lm"
    metric = Metric("bits_per_char", higher_is_better=False)
    pretrained_kinds = ("zoo", "gpt2")
    # The trainer's defaults for this task, chosen on the 2-core CPU: within 10 minutes the tiny decoder
    # (dim 128, depth 2) reached 1.73 held-out bits per character where the small one reached 2.08.
    train_defaults = dict(batch_size=16, lr=3e-3, warmup_steps=100, eval_every=200)
    formats = FORMATS
    builtin_sets = BUILTIN_SETS
    quick_set = "fortunes"
    generates = True

    # ---- data -------------------------------------------------------------------------
    def for_model(self, dataset: TextDataset, model: torch.nn.Module) -> TextBlocks:
        """The documents of ``dataset`` packed into ``model``'s blocks (its tokenizer and block size)."""
        return TextBlocks(dataset, *_layout(model))

    def make_collate(self, model: torch.nn.Module, train: bool) -> Callable[[list[dict]], dict]:
        """Stack blocks (B, T + 1) into ``inputs`` = [:, :-1] and ``targets`` = [:, 1:]."""

        def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
            blocks = torch.stack([sample["block"] for sample in samples])  # (B, T + 1)
            return {"inputs": blocks[:, :-1], "targets": blocks[:, 1:]}

        return collate

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--vocab-size``, ``--tokenizer-type``, ``--tokenizer`` and ``--block-size``; this task's defaults."""
        group = parser.add_argument_group("text generation")
        group.add_argument("--vocab-size", type=VOCAB_SIZE, default=2048,
                           help="tokenizer vocabulary trained from the text")
        group.add_argument("--tokenizer-type", choices=("unigram", "bpe"), default="unigram",
                           help="sentencepiece model type of a trained tokenizer")
        group.add_argument("--tokenizer", default=None, metavar="PATH",
                           help="use this tokenizer.model (or a model/run folder's) instead of training one")
        group.add_argument("--block-size", type=POSITIVE_INT, default=128, help="tokens per training block (context)")
        super().add_arguments(parser)

    def build_model(self, args: argparse.Namespace, train_set: TextDataset) -> zoo.ZooModel:
        """Tokenizer (trained from ``train_set`` or loaded) + causal backbone + LM head, or the
        ``--pretrained`` GPT-2 with its tokenizer."""
        source = getattr(args, "init_backbone", None)
        if source and source_kind(source) == "weights":
            model = self._pretrained(args, source)
        else:
            tokenizer = self._tokenizer(args, train_set)
            backbone_args = {"vocab_size": tokenizer.vocab_size, **(args.backbone_args or {})}
            if backbone_args["vocab_size"] < tokenizer.vocab_size:
                raise ValueError(f"--backbone-args vocab_size={backbone_args['vocab_size']} is smaller than the "
                                 f"tokenizer's {tokenizer.vocab_size} tokens")
            backbone = zoo.create_backbone(args.backbone or self.default_backbone, **backbone_args)
            spec = self.head_spec(args, train_set)
            head = zoo.create_head(spec["name"], backbone, **spec["args"])
            model = zoo.ZooModel(backbone, head, tokenizer, {}, task=self.name)
        model.preprocessing.update(self.preprocessing(args, model.backbone))
        return model

    def texts(self, dataset: TextDataset) -> list[str]:
        """The documents."""
        return dataset.texts

    def head_spec(self, args: argparse.Namespace, train_set: Dataset) -> dict[str, Any]:
        """The LM head (or ``--head``) with ``--head-args``."""
        return {"name": args.head or self.default_head, "args": dict(args.head_args or {})}

    def preprocessing(self, args: argparse.Namespace, backbone: torch.nn.Module) -> dict[str, Any]:
        """``block_size``, refused when longer than a learned-position backbone's positions."""
        cfg = getattr(backbone, "cfg", None)
        if getattr(cfg, "position", None) == "learned" and cfg.max_len < args.block_size:
            raise ValueError(f"--block-size {args.block_size} is longer than the backbone's {cfg.max_len} positions")
        return {"block_size": args.block_size}

    def _pretrained(self, args: argparse.Namespace, source: str) -> zoo.ZooModel:
        """The converted GPT-2 of folder ``source`` + the LM head, tokenizing with its ``tokenizer.json``."""
        if args.tokenizer:
            raise ZooError(f"--tokenizer {args.tokenizer} conflicts with {FLAG} {source}: the pretrained model "
                           f"reads the ids of its own tokenizer.json; drop --tokenizer")
        model = zoo.create_model(None, args.head or self.default_head, pretrained=source, task=self.name,
                                 **(args.head_args or {}))
        if model.tokenizer is None:
            raise ZooError(f"{FLAG} {source} has no tokenizer.json; text_generation needs the tokenizer the "
                           f"model was trained with (save it beside the weights)")
        if model.tokenizer.vocab_size > model.backbone.cfg.vocab_size:
            raise ZooError(f"{FLAG} {source}: tokenizer.json has {model.tokenizer.vocab_size} tokens, more than "
                           f"the model's {model.backbone.cfg.vocab_size}; the two do not belong together")
        return model

    def _tokenizer(self, args: argparse.Namespace, train_set: TextDataset) -> Tokenizer:
        if args.tokenizer:
            path = Path(args.tokenizer)
            return Tokenizer.load(resolve_checkpoint(path) / TOKENIZER_FILE if path.is_dir() else path)
        print(f"training a {args.tokenizer_type} tokenizer of {args.vocab_size} tokens on {train_set.source}",
              flush=True)
        return Tokenizer.train(self.texts(train_set), vocab_size=args.vocab_size, model_type=args.tokenizer_type)

    # ---- evaluation and prediction -----------------------------------------------------
    def evaluate(self, model: torch.nn.Module, dataset: TextBlocks, options: EvalOptions) -> dict[str, float]:
        """``loss``, ``perplexity``, ``bits_per_char`` (+ ``tokens``, ``characters``) on every block."""
        blocks = dataset.blocks(*_layout(model))
        return evaluate_blocks(model, blocks, dataset.texts, options.batch_size or self.eval_batch_size, options)

    def predict(self, model: torch.nn.Module, inputs: Sequence[str], stream: bool = False,
                batch_size: int | None = None, **options: Any) -> list[str]:
        """The continuation of each prompt (generation options of :mod:`zoo.generation`), generated in
        batches of ``batch_size`` prompts (None: all in one).

        ``stream=True`` also writes each prompt and its continuation to stdout as tokens come
        (greedy or sampling; one prompt after another).
        """
        if stream:
            texts = []
            for number, text in enumerate(inputs):
                if number:
                    sys.stdout.write("\n")
                texts.append(stream_text(model, text, sys.stdout, **options))
            return texts
        chunks = ordered_chunks(list(range(len(inputs))), batch_size or max(len(inputs), 1))
        return [text for chunk in chunks for text in continue_texts(model, [inputs[i] for i in chunk], **options)]

    def decoded_samples(self, model: torch.nn.Module, dataset: Dataset, count: int = 3) -> list[str]:
        """Greedy continuations of the openings (:data:`SAMPLE_PROMPT` characters) of the first ``count`` texts;
        on a learned-position backbone, prompt and :data:`SAMPLE_TOKENS` new tokens within half its positions each."""
        prompts = [text[:SAMPLE_PROMPT] for text in dataset.texts[:count]]
        new, limit = SAMPLE_TOKENS, position_limit(model)
        if limit is not None:
            new = min(new, limit // 2)
            prompts = [model.tokenizer.decode(model.tokenizer.encode(text)[:limit - new - 1]) for text in prompts]
        continuations = model.generate_text(prompts, max_new_tokens=new)
        return [f"{prompt}|{continuation}" for prompt, continuation in zip(prompts, continuations)]

    def explanation_inputs(self, dataset: Dataset, folder: Path, count: int = 2) -> list[str]:
        """The openings (:data:`SAMPLE_PROMPT` characters) of the first ``count`` texts, as prompts to explain."""
        return [text[:SAMPLE_PROMPT] for text in dataset.texts[:count]]

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--stream", action="store_true", help="print tokens as they are generated")

    def predict_options(self, args: argparse.Namespace) -> dict[str, Any]:
        return {**super().predict_options(args), "stream": args.stream and not args.json}

    def format_prediction(self, item: Any, prediction: Any) -> str:
        """Prompt and continuation as one text."""
        return f"{item}{prediction}"


def _layout(model: torch.nn.Module) -> tuple[BaseTokenizer, int]:
    """``model``'s tokenizer and block size (its ``preprocessing``); refuses a model without them."""
    if getattr(model, "tokenizer", None) is None or "block_size" not in getattr(model, "preprocessing", {}):
        raise ValueError("this model has no tokenizer or block size; text_generation models are built by "
                         "`zoo train text_generation` (TextGenerationTask.build_model)")
    return model.tokenizer, int(model.preprocessing["block_size"])
