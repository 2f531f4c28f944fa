"""Where zoo keeps prepared files (``$ZOO_DATA``) and how a folder is written atomically."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def data_root() -> Path:
    """The prepared-files cache: ``$ZOO_DATA`` or ``~/.cache/zoo/data``."""
    return Path(os.environ.get("ZOO_DATA", Path.home() / ".cache" / "zoo" / "data")).expanduser()


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on success it replaces ``final``.

    A failure or an interruption leaves any previous ``final`` untouched and no half-built
    folder behind the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cache may be shared
    try:
        yield tmp
        old = final.parent / f".{final.name}-old-{os.getpid()}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
