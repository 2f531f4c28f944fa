"""``python -m tasks.speech_translation.train [flags]``: the same as ``zoo train speech_translation [flags]``."""
from zoo.cli import train_main

main = train_main("speech_translation", __name__)  # under ``python -m`` it trains at once
