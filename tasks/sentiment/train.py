"""``python -m tasks.sentiment.train [flags]``: the same as ``zoo train sentiment [flags]``."""
from __future__ import annotations

import sys

import zoo


def main(argv: list[str] | None = None) -> None:
    """Train the sentiment task with the shared trainer's flags (``--help`` lists them)."""
    zoo.get_task("sentiment").command("train", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
