"""``python -m tasks.image_classification.train [flags]``: the same as ``zoo train image_classification [flags]``."""
from zoo.cli import train_main

main = train_main("image_classification", __name__)  # under ``python -m`` it trains at once
