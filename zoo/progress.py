"""Progress bars (tqdm) for every step that may take longer than a couple of seconds.

:func:`progress_bar` is tqdm with the project's settings: nothing is drawn for a step shorter
than :data:`DELAY_S` (tqdm's ``delay``), nothing when stderr is not a terminal (``disable=None``),
and nothing at all inside ``with progress_enabled(False):`` (what ``--no-progress`` does).
:func:`working` covers one blocking call with no loop to count (tracing an export, training a
tokenizer): past :data:`DELAY_S` it shows what is running and the time elapsed, redrawn every
second, until the block ends. Finished bars are cleared (``leave=False``) unless asked otherwise.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from tqdm import tqdm

DELAY_S = 2.0          # a bar appears only once its step has run this long
REDRAW_S = 1.0         # how often :func:`working` redraws its elapsed time
_enabled = True


@contextmanager
def progress_enabled(enabled: bool) -> Iterator[None]:
    """Inside the block bars are drawn only if ``enabled`` (and not turned off around it); the setting
    before comes back after. The commands run in ``progress_enabled(not args.no_progress)``."""
    global _enabled
    before, _enabled = _enabled, _enabled and enabled
    try:
        yield
    finally:
        _enabled = before


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str | None = None,
                 unit: str = "it", enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand up to ``total``), shown past :data:`DELAY_S`
    on a terminal unless ``enabled`` is False or bars are off; ``options`` go to tqdm."""
    settings: dict[str, Any] = dict(delay=DELAY_S, leave=False, dynamic_ncols=True)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if enabled and _enabled else True,
                **{**settings, **options})


@contextmanager
def working(description: str) -> Iterator[None]:
    """Show ``description: <elapsed>`` while the block runs, once it has run :data:`DELAY_S`."""
    bar = progress_bar(desc=description, bar_format="{desc}: {elapsed}")
    done = threading.Event()

    def redraw() -> None:
        while not done.wait(REDRAW_S):
            if bar.format_dict["elapsed"] >= bar.delay:
                bar.refresh()

    ticker = threading.Thread(target=redraw, daemon=True)
    if not bar.disable:
        ticker.start()
    try:
        yield
    finally:
        done.set()
        if ticker.is_alive():
            ticker.join()
        bar.close()
