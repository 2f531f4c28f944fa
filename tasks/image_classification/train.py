"""``python -m tasks.image_classification.train [flags]``: the same as ``zoo train image_classification [flags]``."""
from __future__ import annotations

import sys

from zoo import cli


def main(argv: list[str] | None = None) -> None:
    """Train the image classification task with the shared trainer's flags (``--help`` lists them)."""
    cli.main(["train", "image_classification", *(sys.argv[1:] if argv is None else argv)])   # its one-line errors too


if __name__ == "__main__":
    main()
