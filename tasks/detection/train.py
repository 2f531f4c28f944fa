"""``python -m tasks.detection.train [flags]``: the same as ``zoo train detection [flags]``."""
from __future__ import annotations

import sys

from zoo import cli


def main(argv: list[str] | None = None) -> None:
    """Train the detection task with the shared trainer's flags (``--help`` lists them)."""
    cli.main(["train", "detection", *(sys.argv[1:] if argv is None else argv)])   # its one-line errors too


if __name__ == "__main__":
    main()
