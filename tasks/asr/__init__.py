"""Speech recognition: the audio pipeline, data adapters and built-in synthesized speech sets."""
