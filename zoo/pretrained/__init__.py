"""Pretrained weights in, no network: ``zoo.create_model(pretrained=NAME_OR_PATH, head=...)``.

A NAME is catalog weights prepared under ``$ZOO_DATA/weights`` (:mod:`zoo.pretrained.catalog`,
``zoo list weights``). PATH is a zoo model or run folder, a local transformers folder (``config.json`` +
``model.safetensors``, what ``save_pretrained`` writes), a timm folder or weights file, or a
torchaudio weights file. GPT-2 and ViT convert into our own blocks; BERT, wav2vec2, Marian
and the Whisper encoder stay wrapped (:mod:`zoo.pretrained.wrapped`). Only safetensors are read.
"""
from zoo.pretrained.sources import SUPPORTED, Pretrained, load_pretrained

__all__ = ["SUPPORTED", "Pretrained", "load_pretrained"]
