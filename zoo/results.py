"""Typed prediction results, one small frozen dataclass per task family (what ``zoo.pipeline`` returns).

Each task turns one of its ``predict`` outputs into one of these (``Task.to_result``);
``to_dict()`` gives plain JSON (tuples as lists) and ``from_dict`` reads it back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


def _json(value: Any) -> Any:
    """``value`` with every tuple turned into a list, recursively (what JSON reads back)."""
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def _tuples(value: Any) -> Any:
    """``value`` with every list turned into a tuple, recursively (the fields' own types)."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Result:
    """Base of the typed results: ``to_dict()`` for JSON, ``from_dict`` back."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples become lists)."""
        return _json(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        """The result ``to_dict`` gave ``data`` for (lists back to tuples)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: _tuples(v) for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Classification(Result):
    """A class for one input: the best ``label``, its probability ``score`` and ``scores`` {label: probability}
    of the classes ranked (every class for sentiment, the top ones for images); ``explanation``: a heat-map PNG
    when asked for (image classification's ``explain_to``)."""

    label: str
    score: float
    scores: dict[str, float]
    explanation: str | None = None


@dataclass(frozen=True)
class Detection(Result):
    """Objects in one image: ``boxes`` (x1, y1, x2, y2) in the image's pixels with their ``labels`` and
    ``scores``, best first; the image's ``width`` and ``height``; ``drawn``: the PNG with the boxes when asked for."""

    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[str, ...]
    scores: tuple[float, ...]
    width: int
    height: int
    drawn: str | None = None


@dataclass(frozen=True)
class Transcription(Result):
    """The transcript of one audio clip."""

    text: str


@dataclass(frozen=True)
class Generation(Result):
    """The continuation generated after one prompt (the prompt itself not repeated)."""

    text: str


@dataclass(frozen=True)
class Translation(Result):
    """The translation of one source text."""

    text: str
