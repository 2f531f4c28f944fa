"""Where a run's rows go besides ``metrics.jsonl``: TensorBoard event files and a CSV mirror.

``--logger tensorboard csv`` (the default) writes ``RUN/tensorboard/`` (every numeric field of
every row as a scalar: ``train/*``, ``validation/*``, ``lr``; the run's flags as text; the
curves picture; at each evaluation the pictures it drew (confusion matrix, detections) and a few
decoded samples of generating tasks as text; at the end, pictures explaining a few validation inputs
as `zoo explain` draws them, also kept in ``RUN/explanations/``) and ``RUN/metrics.csv`` (one column per field of ``metrics.jsonl``, rewritten
from it at every evaluation and at the end, so it always mirrors the JSON lines, resumes
included); ``--logger none`` writes neither.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from tasks.engine.curves import read_metrics, write_atomically
from zoo.errors import ZooError

LOGGERS = ("tensorboard", "csv", "none")
DEFAULT_LOGGERS = ("tensorboard", "csv")
EVENTS = "tensorboard"
CSV_MIRROR = "metrics.csv"
EXPLANATIONS = "explanations"   # RUN/explanations/: the pictures of explain_samples, logged at the end


def check_loggers(names: list[str]) -> list[str]:
    """``--logger`` values without repeats; ``none`` must stand alone."""
    chosen = list(dict.fromkeys(names))
    if "none" in chosen and len(chosen) > 1:
        raise ZooError(f"--logger {' '.join(names)}: 'none' turns every logger off; give it alone or leave it out")
    return [] if chosen == ["none"] else chosen


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a ``metrics.jsonl`` field: ``val_X`` -> ``validation/X``, ``train_X`` ->
    ``train/X``, ``lr`` -> ``lr``, other step fields -> ``train/FIELD``."""
    if key.startswith("val_"):
        return f"validation/{key[4:]}"
    if key.startswith("train_"):
        return f"train/{key[6:]}"
    return key if key == "lr" else f"train/{key}"


class RunLoggers:
    """The run's loggers on the main process: ``row`` per step, ``flush`` at evaluations and the end."""

    def __init__(self, run_dir: Path, names: list[str], flags: dict[str, Any], first_step: int) -> None:
        names = check_loggers(names)
        self.run_dir, self.csv = Path(run_dir), "csv" in names
        self.events = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter   # slow import: only when asked for

            # purge_step drops the events a killed run wrote after the checkpoint it resumes from
            self.events = SummaryWriter(str(self.run_dir / EVENTS), purge_step=first_step or None)
            if not first_step:
                self.events.add_text("flags", "\n".join(f"    {k} = {json.dumps(v)}" for k, v in sorted(flags.items())))

    def row(self, row: dict[str, Any]) -> None:
        """One ``metrics.jsonl`` row: its numeric fields as scalars at its step."""
        if self.events is None:
            return
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.events.add_scalar(scalar_tag(key), value, row["step"])

    def picture(self, tag: str, png: Path, step: int) -> None:
        """A PNG the run drew (the curves) as an image at ``step``."""
        if self.events is not None and png.is_file():
            import numpy as np
            from PIL import Image

            with Image.open(png) as image:
                self.events.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def evaluation(self, step: int, pictures: tuple[str, ...], samples: list[str]) -> None:
        """What an evaluation at ``step`` drew (PNGs matching the ``pictures`` globs in the run folder, each
        as ``evaluation/<name>``) and decoded (``samples``, as the text ``samples``)."""
        if self.events is None:
            return
        for pattern in pictures:
            for png in sorted(self.run_dir.glob(pattern)):
                self.picture(f"evaluation/{png.relative_to(self.run_dir).with_suffix('')}", png, step)
        if samples:
            self.events.add_text("samples", "\n\n".join("    " + text.replace("\n", "\n    ") for text in samples), step)

    def explanations(self, pngs: list[Path], step: int) -> None:
        """The explanation pictures of a few validation inputs (drawn at the end of training), each as
        ``explanation/<file name>`` at ``step``."""
        for png in pngs:
            self.picture(f"explanation/{png.stem}", png, step)

    def flush(self) -> None:
        """Rewrite the CSV mirror from ``metrics.jsonl``; push pending events to disk."""
        if self.csv:
            write_csv_mirror(self.run_dir)
        if self.events is not None:
            self.events.flush()

    def close(self) -> None:
        """:meth:`flush`, then close the event file."""
        self.flush()
        if self.events is not None:
            self.events.close()


def write_csv_mirror(run_dir: Path) -> Path:
    """``metrics.csv`` from ``metrics.jsonl``: the union of the rows' fields as columns (first-seen
    order), one line per row, nested values as JSON; written atomically."""
    rows = read_metrics(run_dir)
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})

    out = run_dir / CSV_MIRROR
    write_atomically(out, write)
    return out
