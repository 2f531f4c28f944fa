"""``python -m tasks.text_generation.train [flags]``: the same as ``zoo train text_generation [flags]``."""
from zoo.cli import train_main

main = train_main("text_generation", __name__)  # under ``python -m`` it trains at once
