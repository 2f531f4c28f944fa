"""``python -m tasks.translation.train [flags]``: the same as ``zoo train translation [flags]``."""
from zoo.cli import train_main

main = train_main("translation", __name__)  # under ``python -m`` it trains at once
