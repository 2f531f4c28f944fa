"""``python -m tasks.image_classification.train [flags]``: the same as ``zoo train image_classification [flags]``."""
from __future__ import annotations

import sys

import zoo


def main(argv: list[str] | None = None) -> None:
    """Train the image classification task with the shared trainer's flags (``--help`` lists them)."""
    zoo.get_task("image_classification").command("train", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
