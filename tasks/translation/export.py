"""Translation as an encoder graph and a decoder-step graph (:mod:`tasks.engine.seq2seq_export`) driven by
the numpy greedy/beam loop of :mod:`tasks.engine.onnx_decode`.

Sources are tokenised, cut to ``max_len`` and batched shortest first as ``translate`` does, each batch's
budget of new tokens sized the same way, so the texts equal ``TranslationTask.predict``'s.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from tasks.engine.export import Exported, Graph
from tasks.engine.onnx_decode import check_options, decode
from tasks.engine.seq2seq_export import Seq2SeqStepper, graphs
from tasks.translation.evaluation import source_batches
from zoo.errors import ZooError
from zoo.texts import DEFAULT_MAX_LEN, output_budget, target_tokenizer
from zoo.tokenizer import pad_ids

TRACED_SOURCES = ([5, 6, 7, 8, 9, 10], [11, 12, 13])     # two lengths: batch and source length stay dynamic


def graph(model: nn.Module) -> dict[str, Graph]:
    """The encoder and decoder-step graphs of the seq2seq head."""
    vocab = model.backbone.embed.num_embeddings
    inputs, mask = pad_ids([[i % vocab for i in row] for row in TRACED_SOURCES], 0)
    return graphs(model, inputs, mask, {0: "batch", 1: "source_tokens"})


stepper = Seq2SeqStepper    # the engine's name for it (tasks.engine.export)


def predict(exported: Exported, inputs: Sequence[str], batch_size: int = 32, max_new_tokens: int | None = None,
            **options: Any) -> list[str]:
    """Translations of the texts, as ``TranslationTask.predict`` (greedy or beam search)."""
    check_options(**options)
    source_tok = exported.tokenizer()
    target_tok = target_tokenizer(source_tok, exported.preprocessing)
    max_len = int(exported.preprocessing.get("max_len", DEFAULT_MAX_LEN))
    try:
        chunks, batch_of = source_batches(inputs, source_tok, max_len, batch_size)
    except ValueError as err:
        raise ZooError(str(err)) from None
    stops = tuple(options.pop("stop_tokens", (source_tok.eos_id,)))
    results = [""] * len(inputs)
    for rows in chunks:
        batch = batch_of(rows)
        budget = max_new_tokens or output_budget(batch["inputs"].shape[1], max_len)
        stepper = Seq2SeqStepper(exported, batch["inputs"].numpy(), batch["mask"].numpy(), budget)
        for i, ids in zip(rows, decode(stepper, stops, budget, **options)):
            results[i] = target_tok.decode(ids)
    return results
