"""``python -m tasks.sentiment.train [flags]``: the same as ``zoo train sentiment [flags]``."""
from zoo.cli import train_main

main = train_main("sentiment", __name__)  # under ``python -m`` it trains at once
