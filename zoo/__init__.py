"""zoo: one transformer backbone registry, pluggable task heads, one benchmark across modalities.

>>> import zoo
>>> zoo.list_backbones("vit_*")
>>> model = zoo.create_model(backbone="vit_tiny", head="classification",
...                          backbone_args={"img_size": 28, "patch_size": 4}, num_classes=10)
>>> zoo.pipeline("sentiment", "runs/sentiment")("a witty film")     # Classification(label, score, scores)
"""
from __future__ import annotations

from typing import Any

from zoo import backbones as _backbones  # noqa: F401  (registers the built-in backbones)
from zoo.features import Features
from zoo.lora import add_lora, apply_adapters, merge_lora
from zoo.model import ZooModel, create_backbone, create_head, create_model, load
from zoo.pipelines import Pipeline, pipeline
from zoo.pretrained import wrapped as _wrapped  # noqa: F401  (registers the "transformers" backbone)
from zoo.quantized import quantize
from zoo.pruning import prune_model
from zoo.registry import BACKBONES, HEADS, TASKS, Registry
from zoo.results import Classification, Detection, Generation, Transcription, Translation
from zoo.tokenizer import Tokenizer

__version__ = "0.1.0"


def list_backbones(pattern: str = "*", **meta: Any) -> list[str]:
    """Backbone names matching a wildcard and metadata (``modality="audio"``, ``causal=True``)."""
    return BACKBONES.list(pattern, **meta)


def list_heads(pattern: str = "*", **meta: Any) -> list[str]:
    """Head names matching a wildcard and metadata."""
    return HEADS.list(pattern, **meta)


def list_tasks(pattern: str = "*", **meta: Any) -> list[str]:
    """Task names matching a wildcard."""
    return TASKS.list(pattern, **meta)


def get_task(name: str) -> Any:
    """An instance of the registered Task ``name``."""
    return TASKS.create(name)


register_backbone = BACKBONES.register
register_head = HEADS.register
register_task = TASKS.register

__all__ = ["Classification", "Detection", "Features", "Generation", "Pipeline", "Registry", "Tokenizer",
           "Transcription", "Translation", "ZooModel", "BACKBONES", "HEADS", "TASKS", "add_lora", "apply_adapters",
           "create_backbone", "create_head", "create_model", "get_task", "list_backbones", "list_heads", "list_tasks",
           "load", "merge_lora", "pipeline", "prune_model", "quantize", "register_backbone", "register_head", "register_task"]
