"""Registered backbones: text encoder/decoder, ViT, speech encoder, and the timm/torchaudio resolvers."""
from zoo.backbones import adapters, speech, text, vision  # noqa: F401  (registration side effects)
