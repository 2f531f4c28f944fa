"""``python -m tasks.asr.train [flags]``: the same as ``zoo train asr [flags]``."""
from zoo.cli import train_main

main = train_main("asr", __name__)  # under ``python -m`` it trains at once
