"""``python -m tasks.captioning.train [flags]``: the same as ``zoo train captioning [flags]``."""
from zoo.cli import train_main

main = train_main("captioning", __name__)  # under ``python -m`` it trains at once
