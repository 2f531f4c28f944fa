"""``python -m tasks.detection.train [flags]``: the same as ``zoo train detection [flags]``."""
from zoo.cli import train_main

main = train_main("detection", __name__)  # under ``python -m`` it trains at once
