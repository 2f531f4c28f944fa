"""The speech translation Task: English speech -> text in another language, BLEU/chrF and exact match.

The ASR task's model with translations for transcripts: ASR's default encoder (``speech_encoder_tiny``
narrowed for a CPU by ``tasks.asr.task.BACKBONE_DEFAULTS``), its seq2seq head defaults (2 decoder
layers, 4 heads) and a sentencepiece tokenizer of ``--vocab-size`` pieces trained on the training
set's translations (the target language; the model's ``tokenizer``). Everything but the data, the
target units and the scores is ASR's: collate (speed perturbation, length-bucketed batches), the
training defaults (AdamW 3e-3, 900 s budget, EMA), decoding (``model.generate``, greedy or
``--eval-beams``/``--beams``), prediction on audio files or arrays, ``--pretrained`` speech encoders.
The primary metric is corpus BLEU (sacrebleu, on the translations as written), with chrF and exact
match (the goal measure of the spoken numbers) beside it, all by the translation task's ``scores``.
"""
from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.data import Dataset

import zoo
from tasks.asr.evaluation import transcribe
from tasks.asr.formats import SpeechDataset
from tasks.asr.task import AsrTask
from tasks.engine.evaluation import EvalOptions
from tasks.engine.task import Metric
from tasks.speech_translation.builtin import BUILTIN_SETS
from tasks.speech_translation.formats import FORMATS
from tasks.translation.evaluation import scores
from zoo.results import Translation


@zoo.register_task("speech_translation")
class SpeechTranslationTask(AsrTask):
    """Translate English speech (16 kHz after resampling); primary metric BLEU, exact match beside it."""

    name = "speech_translation"
    default_head = "seq2seq"
    metric = Metric("bleu", higher_is_better=True)
    text_result = Translation
    formats = FORMATS
    builtin_sets = BUILTIN_SETS
    quick_set = "numbers"
    # the demo: CTC over characters learns the (near-monotonic) numbers in ~400 steps, the attention
    # decoder not yet; a narrow 2-block encoder without augmentation, 75 s
    demo_args = ("--time-budget", "75", "--eval-every", "0", "--head", "ctc", "--units", "char",
                 "--warmup-steps", "10", "--lr", "5e-3", "--speed-perturb", "1",
                 "--backbone-args", '{"depth": 2, "dim": 64, "spec_augment": false}')

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """ASR's flags, with sentencepiece target units by default (pieces of the translations)."""
        super().add_arguments(parser)
        parser.set_defaults(units="sentencepiece")

    def evaluate(self, model: torch.nn.Module, dataset: Dataset, options: EvalOptions) -> dict[str, float]:
        """Corpus BLEU, chrF and exact match of the translation of every utterance (greedy unless ``--eval-beams``)."""
        hypotheses = self._translate(model, dataset, len(dataset), options.batch_size or self.eval_batch_size,
                                     options=options, beams=options.beams)
        return scores(hypotheses, references(dataset))

    def decoded_samples(self, model: torch.nn.Module, dataset: Dataset, count: int = 3) -> list[str]:
        """The first ``count`` utterances: greedy translation and reference."""
        heard = self._translate(model, dataset, count, count)
        return [f"{hypothesis}\n(reference: {reference})" for hypothesis, reference in zip(heard, references(dataset))]

    def _translate(self, model: torch.nn.Module, dataset: SpeechDataset, count: int, batch_size: int,
                   **options: Any) -> list[str]:
        """Translations of the first ``count`` utterances of ``dataset`` (ASR's decoding)."""
        return transcribe(model, lambda i: dataset[i]["audio"], dataset.lengths[:count], batch_size=batch_size,
                          **options)


def references(dataset: Dataset) -> list[str]:
    """The reference translations of a data set, in order (``entries`` of a :class:`SpeechDataset`)."""
    return [entry.text for entry in dataset.entries]
