"""The speech recognition Task: a speech encoder + the CTC head (or the seq2seq head), WER/CER.

Defaults (``zoo train asr``): ``speech_encoder_tiny`` (log-mel on the device, SpecAugment,
4x subsampling, 4 Conformer blocks) narrowed for a CPU by ``BACKBONE_DEFAULTS`` (width 96, 40 mel
bins; ``--backbone-args`` overrides them, other backbones keep their registered configuration) and
a CTC head over characters whose alphabet is read from the training transcripts and stored in the
head's arguments. ``--units sentencepiece`` switches to sentencepiece units; ``--head seq2seq``
decodes by attention over the same features (``model.generate``, greedy or ``--beams``), with a
sentencepiece tokenizer stored with the model. Training clips are speed-perturbed (0.9/1.0/1.1/1.2:
new pitch and tempo, as from another speaker) and batches group utterances of similar length.
The primary metric is WER (jiwer, on ``normalize_text``-ed transcripts), with CER beside it.
``--pretrained`` a transformers wav2vec2 or Whisper folder (the Whisper encoder), or a torchaudio
wav2vec2 ``.safetensors`` file with ``--backbone torchaudio/<factory>``, wraps that model as the
backbone under the head (``zoo.create_model(pretrained=...)``); audio is then read at 16 kHz, and a
wav2vec2 folder whose ``preprocessor_config.json`` says ``do_normalize`` normalises each waveform
inside the backbone.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

import zoo
from tasks.asr.augment import SPEED_FACTORS, random_speed
from tasks.asr.audio import SAMPLE_RATE, clips, collate_audio
from tasks.asr.builtin import BUILTIN_SETS
from tasks.asr.evaluation import error_rates, transcribe
from tasks.asr.formats import FORMATS, SpeechDataset
from tasks.asr.units import UNITS, build_units, encode_targets
from tasks.engine.evaluation import EvalOptions
from tasks.engine.flags import POSITIVE, POSITIVE_INT, PROBABILITY, VOCAB_SIZE
from tasks.engine.pretrained import source_kind
from tasks.engine.task import Metric, Task
from zoo.errors import ZooError
from zoo.multihead import MultiHeadModel
from zoo.results import Transcription

# the default encoder made cheaper for a CPU: 96 wide, 40 mel bins (SpecAugment bands scaled to them), no dropout
BACKBONE_DEFAULTS: dict[str, Any] = dict(dim=96, n_mels=40, freq_width=7, dropout=0.0)
HEAD_DEFAULTS: dict[str, dict[str, Any]] = {"seq2seq": dict(depth=2, heads=4)}
HYBRID = "hybrid"   # --head hybrid: the ctc and seq2seq heads on one encoder (joint CTC/attention)


@zoo.register_task("asr")
class AsrTask(Task):
    """Transcribe speech (16 kHz after resampling); primary metric WER, lower is better."""

    name = "asr"
    modality = "audio"
    default_backbone = "speech_encoder_tiny"
    default_head = "ctc"
    metric = Metric("wer", higher_is_better=False)
    pretrained_kinds = ("zoo", "wav2vec2", "whisper", "torchaudio_wav2vec2")
    formats = FORMATS
    builtin_sets = BUILTIN_SETS
    quick_set = "digits"
    explain_field = "path"
    generates = True
    text_result = Transcription
    train_defaults = dict(batch_size=16, lr=3e-3, warmup_steps=100, time_budget=900.0, eval_every=300, ema=0.999)
    head_defaults = HEAD_DEFAULTS
    composite_heads = {HYBRID: "seq2seq"}
    bucket_batches = 20
    # the demo's 30 s: a 2-block encoder without augmentation at a higher peak, warmed up in 10 steps
    demo_args = ("--warmup-steps", "10", "--lr", "5e-3", "--speed-perturb", "1",
                 "--backbone-args", '{"depth": 2, "spec_augment": false}')

    # ---- data -------------------------------------------------------------------------
    def make_collate(self, model: torch.nn.Module, train: bool) -> Callable[[list[dict]], dict]:
        """Padded waveforms + mask (:func:`collate_audio`) and the transcripts as unit ``targets``;
        in training each clip is first played at a speed drawn from ``preprocessing["speed_perturb"]``."""
        factors = model.preprocessing.get("speed_perturb", ()) if train else ()

        def collate(samples: list[dict]) -> dict:
            if factors:
                waves = random_speed([s["audio"] for s in samples], factors)
                samples = [{**s, "audio": wave} for s, wave in zip(samples, waves)]
            batch = collate_audio(samples)
            batch["targets"], batch["target_mask"] = encode_targets(model, batch["texts"])
            return batch

        return collate

    def sample_lengths(self, dataset: SpeechDataset) -> list[int]:
        """Samples at 16 kHz of each utterance, from its probed duration (no clip is decoded)."""
        return dataset.lengths

    # ---- model ------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Unit and evaluation flags; sets this task's training defaults."""
        group = parser.add_argument_group("asr")
        group.add_argument("--units", choices=UNITS, default="char",
                           help="output units: characters (CTC alphabet in the head) or sentencepiece pieces")
        group.add_argument("--vocab-size", type=VOCAB_SIZE, default=256,
                           help="sentencepiece pieces with --units sentencepiece")
        group.add_argument("--eval-beams", type=POSITIVE_INT, default=1, help="beam size of evaluation (1 = greedy)")
        group.add_argument("--ctc-weight", type=PROBABILITY, default=0.3,
                           help="--head hybrid: the CTC part of the training loss (the attention part is 1 - it)")
        group.add_argument("--decode-ctc-weight", type=PROBABILITY, default=None, metavar="WEIGHT",
                           help="--head hybrid: evaluate by joint CTC/attention beam search at this CTC weight "
                                "(default: greedy CTC, the fast path)")
        group.add_argument("--speed-perturb", type=POSITIVE, nargs="+", default=list(SPEED_FACTORS), metavar="FACTOR",
                           help="training clips play at one of these speeds, drawn per clip (1 = off)")
        super().add_arguments(parser)

    def build_model(self, args: argparse.Namespace, train_set: Dataset) -> zoo.ZooModel:
        """Backbone + head with units learnt from the training transcripts."""
        head_name = args.head or self.default_head
        if head_name == HYBRID:
            return self._hybrid(args, train_set)
        texts = [entry.text for entry in train_set.entries]
        head_args, tokenizer = build_units(head_name, args.units, texts, args.vocab_size)
        head_args = {**self.head_args(head_name, head_args), **(args.head_args or {})}
        source = getattr(args, "init_backbone", None)
        if source and source_kind(source) == "weights":   # the wrapped model: 16 kHz (its preprocessing says)
            model = zoo.create_model(args.backbone, head_name, pretrained=source, backbone_args=args.backbone_args,
                                     tokenizer=tokenizer, task=self.name, **head_args)
            model.preprocessing.update({"sample_rate": model.preprocessing.get("sample_rate", SAMPLE_RATE),
                                        "speed_perturb": _speeds(args)})
            return model
        backbone, preprocessing = self._encoder(args)
        head = zoo.create_head(head_name, backbone, **head_args)
        return zoo.ZooModel(backbone, head, tokenizer, preprocessing, task=self.name)

    def _encoder(self, args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any]]:
        """A new backbone (``BACKBONE_DEFAULTS`` for the default one) and the model's preprocessing."""
        name = args.backbone or self.default_backbone
        defaults = BACKBONE_DEFAULTS if name == self.default_backbone else {}
        backbone = zoo.create_backbone(name, **{**defaults, **(args.backbone_args or {})})
        self.check_backbone(backbone, name)
        sample_rate = getattr(getattr(backbone, "cfg", None), "sample_rate", SAMPLE_RATE)
        return backbone, {"sample_rate": sample_rate, "speed_perturb": _speeds(args)}

    def _hybrid(self, args: argparse.Namespace, train_set: Dataset) -> zoo.ZooModel:
        """``{ctc, seq2seq}`` on one speech encoder over one sentencepiece vocabulary (id 0: CTC's blank),
        the loss ``ctc_weight * CTC + (1 - ctc_weight) * attention``."""
        if getattr(args, "init_backbone", None):
            raise ZooError("--head hybrid builds its own encoder; --pretrained/--init-backbone is not supported with it")
        units, tokenizer = build_units("seq2seq", args.units, [entry.text for entry in train_set.entries],
                                       args.vocab_size)
        backbone, preprocessing = self._encoder(args)
        heads = {"ctc": {"name": "ctc", "args": {**units, "alphabet": None}},
                 "seq2seq": {"name": "seq2seq", "args": self.head_args("seq2seq", {**units, **(args.head_args or {})})}}
        return MultiHeadModel(backbone, heads, {"ctc": args.ctc_weight, "seq2seq": 1.0 - args.ctc_weight}, None,
                              tokenizer, preprocessing, task=self.name)

    # ---- evaluation and prediction -----------------------------------------------------
    def evaluate(self, model: torch.nn.Module, dataset: Dataset, options: EvalOptions) -> dict[str, float]:
        """WER and CER of the transcripts of every utterance (greedy unless ``--eval-beams``)."""
        hypotheses = transcribe(model, lambda i: dataset[i]["audio"], dataset.lengths,
                                batch_size=options.batch_size or self.eval_batch_size, options=options,
                                beams=options.beams)
        return error_rates(hypotheses, [entry.text for entry in dataset.entries])

    def predict(self, model: torch.nn.Module, inputs: Sequence[str | Path | np.ndarray | torch.Tensor],
                batch_size: int = 16, sample_rate: int | None = None, **options: Any) -> list[str]:
        """Transcripts of audio files (wav, flac, ogg, mp3; any rate and channels) or of 1-D sample arrays
        at ``sample_rate`` Hz (default: the model's); ``options`` are generation options (``beams``;
        attention decoding also takes ``max_new_tokens``, sampling...)."""
        lengths, load = clips(inputs, model.preprocessing.get("sample_rate", SAMPLE_RATE), sample_rate)
        return transcribe(model, load, lengths, batch_size=batch_size, **options)

    def uses_all_heads(self, model: torch.nn.Module) -> bool:
        """A hybrid model's ``ctc`` and ``seq2seq`` heads decode together."""
        return set(getattr(model, "heads", {})) == {"ctc", "seq2seq"}

    def decoded_samples(self, model: torch.nn.Module, dataset: Dataset, count: int = 3) -> list[str]:
        """The first ``count`` utterances: greedy transcript and reference."""
        entries = dataset.entries[:count]
        heard = transcribe(model, lambda i: dataset[i]["audio"], dataset.lengths[:count], batch_size=count)
        return [f"heard:     {text}\nreference: {entry.text}" for entry, text in zip(entries, heard)]

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--batch-size``; ``--max-new-tokens`` defaults to a budget sized from the audio."""
        parser.set_defaults(max_new_tokens=None)
        parser.add_argument("--batch-size", type=POSITIVE_INT, default=16, help="clips transcribed together")
        parser.add_argument("--decode-ctc-weight", type=PROBABILITY, default=None, metavar="WEIGHT",
                            help="a hybrid model: joint CTC/attention beam search at this CTC weight (default: CTC)")

    def predict_options(self, args: argparse.Namespace) -> dict[str, Any]:
        """The generation options, ``batch_size`` and, for a hybrid model, ``ctc_weight``."""
        options = super().predict_options(args)
        return {**options, "ctc_weight": args.decode_ctc_weight} if args.decode_ctc_weight is not None else options


def _speeds(args: argparse.Namespace) -> list[float]:
    """The speed-perturbation factors of ``--speed-perturb`` (none when every factor is 1)."""
    return [] if all(f == 1.0 for f in args.speed_perturb) else list(args.speed_perturb)
