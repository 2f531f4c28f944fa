"""Command-line flags every task shares, and the argparse types that refuse bad values at parse time.

``add_train_arguments`` (`zoo train TASK`) and ``add_generation_arguments`` (`zoo predict` of the
generating tasks) live here, next to the number types their flags use (:class:`Range`:
``--batch-size 0`` fails as ``argument --batch-size: expected an integer >= 1, got '0'``) and
the JSON-object type of ``--backbone-args``/``--head-args``. :func:`check_factory_args` refuses
keys a registered backbone or head does not take, listing the ones it does.
"""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

from tasks.engine.loggers import DEFAULT_LOGGERS, LOGGERS
from tasks.engine.precision import AUTO, AUTO_HELP
from zoo.arguments import check_args, fields_of
from zoo.cli import did_you_mean
from zoo.errors import ZooError
from zoo.registry import Registry

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
TRAIN_PRECISIONS = (*PRECISIONS, "fp16")        # fp16 trains on CUDA only, with a loss scaler
CONFIG_FORMATS = ("yaml", "json")
STRATEGIES = ("ddp", "fsdp2")   # --strategy: replicate the model, or shard it (parameters, gradients, optimizer)
DEVICE_HELP = "auto: cuda when torch sees a GPU, else cpu"


class Range:
    """argparse type: an ``int`` or finite ``float`` within bounds (each inclusive unless ``*_open``)."""

    def __init__(self, kind: type, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> None:
        self.kind, self.low, self.high, self.low_open, self.high_open = kind, low, high, low_open, high_open
        self.__name__ = self.describe()      # argparse names the type by __name__ in some messages

    def describe(self) -> str:
        """``an integer >= 1``, ``a number > 0``, ``a number in [0, 1)``..."""
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {self.high}"
        return noun

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}") from None
        if not math.isfinite(value) or not self._within(value):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        return value

    def _within(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


POSITIVE_INT = Range(int, 1)                      # sizes and counts that need one: --batch-size, --beams
COUNT = Range(int, 0)                             # 0 allowed, often meaning "off": --eval-every, --top-k
POSITIVE = Range(float, 0, low_open=True)         # --lr, --time-budget, --epochs
NON_NEGATIVE = Range(float, 0)                    # --grad-clip, --weight-decay, --temperature
PROBABILITY = Range(float, 0, 1)                  # --top-p, --hflip, --score-threshold
DROP_FRACTION = Range(float, 0, 1, high_open=True)    # dropping everything would leave nothing to learn from
DECAY = Range(float, 0, 1, low_open=True, high_open=True)   # --ema
LAYER_DECAY = Range(float, 0, 1, low_open=True)   # --layer-decay: 1 leaves every layer at --lr
VOCAB_SIZE = Range(int, 5)                        # sentencepiece's 4 special pieces (pad, unk, bos, eos) + one


def json_object(text: str) -> dict:
    """argparse type of the JSON-object flags (``--backbone-args '{"dim": 128}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg} at character {err.pos}) in {text!r}; "
                                         f"write a JSON object like '{{\"dim\": 128}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"dim\": 128}}', got {text!r}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags every task's trainer shares (tasks add theirs with ``task.add_arguments``)."""
    g = parser.add_argument_group("training")
    g.add_argument("--data", default="builtin", help="training data SPEC: builtin, builtin:NAME or FORMAT:PATH[?k=v]")
    g.add_argument("--val-data", default=None,
                   help="validation SPEC: a file is used whole, a built-in set gives its validation split "
                        "(default: the validation split of --data)")
    g.add_argument("--out", default=None, help="run folder (default: runs/<task>-<timestamp>)")
    g.add_argument("--backbone", default=None, help="backbone registry name (default: the task's)")
    g.add_argument("--head", default=None, help="head registry name (default: the task's)")
    g.add_argument("--backbone-args", type=json_object, default=None, metavar="JSON", help="backbone arguments")
    g.add_argument("--head-args", type=json_object, default=None, metavar="JSON", help="head arguments")
    g.add_argument("--batch-size", type=POSITIVE_INT, default=32, help="items per batch per process")
    g.add_argument("--lr", type=POSITIVE, default=1e-3, help="peak learning rate")
    g.add_argument("--weight-decay", type=NON_NEGATIVE, default=0.01, help="AdamW decay on matrices")
    g.add_argument("--layer-decay", type=LAYER_DECAY, default=1.0, metavar="RATE",
                   help="layer-wise lr decay for fine-tuning: the head trains at --lr, backbone block i of L at "
                        "lr*RATE^(L-i), the embeddings at lr*RATE^(L+1) (zoo backbones; 1: off)")
    g.add_argument("--warmup-steps", type=COUNT, default=None,
                   help="linear warm-up steps (default: 5%% of the planned steps; 20 with only --time-budget)")
    g.add_argument("--max-steps", type=POSITIVE_INT, default=None, help="optimizer steps to train")
    g.add_argument("--epochs", type=POSITIVE, default=None, help="passes over the training set")
    g.add_argument("--time-budget", type=POSITIVE, default=None, metavar="SECONDS", help="stop cleanly after this long")
    g.add_argument("--grad-clip", type=NON_NEGATIVE, default=1.0, help="clip the gradient norm to this (0: off)")
    g.add_argument("--accumulate", type=POSITIVE_INT, default=1, metavar="N", help="micro-batches per optimizer step")
    g.add_argument("--precision", choices=(*TRAIN_PRECISIONS, AUTO), default="fp32",
                   help=f"plain fp32, bf16 autocast, or fp16 autocast with a gradient scaler (CUDA only); {AUTO_HELP}")
    g.add_argument("--device", choices=DEVICES, default="auto", help=DEVICE_HELP)
    g.add_argument("--compile", action="store_true", help="wrap the model with torch.compile")
    g.add_argument("--strategy", choices=STRATEGIES, default="ddp",
                   help="under torchrun: ddp replicates the model on every process, fsdp2 shards its parameters, "
                        "gradients and optimizer state (bf16 compute on GPUs); one process: neither")
    g.add_argument("--seed", type=int, default=0, help="seed of every random stream")
    g.add_argument("--freeze-backbone", action="store_true", help="train the head only")
    g.add_argument("--ema", type=DECAY, default=None, metavar="DECAY", help="evaluate and save an EMA of the weights")
    g.add_argument("--eval-every", type=COUNT, default=0, metavar="N",
                   help="evaluate every N steps (0: at the end only)")
    g.add_argument("--patience", type=COUNT, default=0, metavar="N",
                   help="stop after N evaluations without improvement")
    g.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    g.add_argument("--pretrained", "--init-backbone", dest="init_backbone", default=None, metavar="NAME|PATH",
                   help="start from pretrained weights: a name of `zoo list weights`, a zoo run or model folder, "
                        "a transformers folder, or a timm/torchaudio .safetensors file")
    g.add_argument("--checkpoint-every", type=COUNT, default=0, metavar="N",
                   help="also save every N steps (checkpoints are always saved at evaluations)")
    g.add_argument("--workers", type=COUNT, default=0, metavar="N", help="data loading processes")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--logger", nargs="+", choices=LOGGERS, default=list(DEFAULT_LOGGERS), metavar="NAME",
                   help=f"run logs besides metrics.jsonl: {', '.join(LOGGERS)} (TensorBoard events, metrics.csv)")
    g.add_argument("--keep", type=POSITIVE_INT, default=2, metavar="N",
                   help="step checkpoints kept besides the ones best/last name (at least --average-last)")
    g.add_argument("--average-last", type=POSITIVE_INT, default=None, metavar="N",
                   help="keep the last N step checkpoints (one per evaluation and per --checkpoint-every save) and "
                        "write RUN/averaged/, their uniform mean, at the end (zoo eval --checkpoint RUN/averaged; "
                        "--checkpoint RUN stays the best)")
    config = parser.add_argument_group("configuration file (its keys are these flags; flags given here override it)")
    config.add_argument("--config", default=None, metavar="FILE",
                        help="read flag values from a YAML or JSON file (a run's args.json works)")
    config.add_argument("--print-config", nargs="?", const="yaml", default=None, choices=CONFIG_FORMATS,
                        metavar="FORMAT", help="print the resolved flags as a --config file (yaml or json) and exit")
    distill = parser.add_argument_group("distillation (a teacher's soft outputs; see tasks/engine/distill.py)")
    distill.add_argument("--distill-from", default=None, metavar="RUN_DIR",
                         help="teacher run or model folder of this task (same tokenizer and labels)")
    distill.add_argument("--distill-weight", type=PROBABILITY, default=0.5, metavar="W",
                         help="loss = (1-W) * task loss + W * T^2 * KL to the teacher")
    distill.add_argument("--distill-temperature", type=POSITIVE, default=2.0, metavar="T",
                         help="softmax temperature of teacher and student in the KL")
    lora = parser.add_argument_group("LoRA (adapters on the backbone's linears, base weights frozen; see zoo.lora)")
    lora.add_argument("--lora", type=POSITIVE_INT, default=None, metavar="RANK", help="train LoRA adapters of this rank")
    lora.add_argument("--lora-alpha", type=POSITIVE, default=None, metavar="A",
                      help="adapter scaling alpha/RANK (default: RANK, a scaling of 1)")
    lora.add_argument("--lora-targets", nargs="+", default=None, metavar="NAME",
                      help="linear layers to adapt, by name or name ending (default: the attention and MLP "
                           "linears of the backbone's layers)")
    lora.add_argument("--lora-dropout", type=DROP_FRACTION, default=0.0, metavar="P", help="dropout before the adapters")


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """The generation options every generating task shares."""
    g = parser.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=COUNT, default=64, help="tokens generated at most per input")
    g.add_argument("--temperature", type=NON_NEGATIVE, default=0.0, help="sampling temperature (0: greedy)")
    g.add_argument("--top-k", type=COUNT, default=0, help="sample from the K likeliest tokens (0: all)")
    g.add_argument("--top-p", type=PROBABILITY, default=1.0, help="nucleus sampling mass")
    g.add_argument("--beams", type=POSITIVE_INT, default=1, help="beam search width (1: greedy or sampling)")
    g.add_argument("--length-penalty", type=float, default=1.0, help="beam scores divided by length**this")
    g.add_argument("--no-repeat-ngram", dest="no_repeat_ngram_size", type=COUNT, default=0, metavar="N",
                   help="never repeat an N-gram of the prompt and the generated tokens, in greedy, sampling and beam "
                        "search (transformers' no_repeat_ngram_size; 0: off)")
    g.add_argument("--seed", type=int, default=None, help="seed of sampling (default: unseeded)")


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The generation keyword arguments from parsed flags."""
    return dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                top_p=args.top_p, beams=args.beams, length_penalty=args.length_penalty, seed=args.seed,
                no_repeat_ngram_size=args.no_repeat_ngram_size)


def factory_keys(registry: Registry, name: str, reserved: tuple[str, ...] = ()) -> list[str] | None:
    """The argument names the factory registered as ``name`` takes, or None when it takes any.

    A registered ``config`` (our backbones: the fields of their config dataclass) lists them;
    otherwise the factory's signature does, less ``reserved`` (what the caller passes itself,
    e.g. a head's ``backbone``); a factory taking ``**kwargs`` (``timm/...``) takes any.
    """
    fields = fields_of(registry.get(name), registry.meta(name), skip=reserved)
    return None if fields is None else sorted(fields)


def check_factory_args(registry: Registry, name: str, given: dict[str, Any] | None, flag: str,
                       reserved: tuple[str, ...] = ()) -> None:
    """Refuse keys of ``given`` (the JSON of ``flag``) that ``name``'s factory does not take, listing its
    keys, and values of another type than the factory's field (a string where a number belongs).

    An unknown ``name`` raises the registry's KeyError (with its did-you-mean).
    """
    factory = registry.get(name)
    if not given:
        return
    fields = fields_of(factory, registry.meta(name), skip=reserved)
    if fields is None:
        return
    keys = sorted(fields)
    unknown = sorted(set(given) - set(keys))
    if unknown:
        takes = f"it takes {', '.join(keys)}" if keys else "it takes no arguments"
        raise ZooError(f"{flag}: {registry.kind} {name!r} has no argument {unknown[0]!r} ({takes})"
                       f"{did_you_mean(unknown[0], keys)}")
    try:
        check_args(registry.kind, name, given, fields)
    except ZooError as err:
        raise ZooError(f"{flag}: {err}") from None
