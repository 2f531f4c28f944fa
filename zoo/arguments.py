"""Check the arguments given to a registered factory against the ones it takes, before calling it.

The fields and their types come from the registry's ``config`` metadata (a backbone's defaults)
or from the factory's signature (defaults, or annotations of plain types); factories that take
``**kwargs`` without a ``config`` (timm, torchaudio) are not checked here.
"""
from __future__ import annotations

import inspect
import typing
from typing import Any, Callable

from zoo.errors import ZooError

_PLAIN = (bool, int, float, str)


def fields_of(factory: Callable[..., Any], meta: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Argument name -> an example of its type (None: any) for ``factory``; None when unknown."""
    if isinstance(meta.get("config"), dict):
        return dict(meta["config"])
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    params = [p for p in signature.parameters.values() if p.name not in skip]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    try:
        hints = typing.get_type_hints(factory)
    except (NameError, TypeError, AttributeError):   # unresolvable annotations: the defaults alone
        hints = {}
    fields: dict[str, Any] = {}
    for p in params:
        if p.default is not inspect.Parameter.empty and p.default is not None:
            fields[p.name] = p.default
        else:
            fields[p.name] = hints[p.name]() if hints.get(p.name) in _PLAIN else None
    return fields


def check_args(kind: str, name: str, args: dict[str, Any], fields: dict[str, Any] | None) -> None:
    """Raise ZooError for an argument ``name`` does not take, or of another type than its field."""
    if fields is None:
        return
    for key, value in args.items():
        if key not in fields:
            raise ZooError(f"{kind} {name!r} has no argument {key!r}; valid arguments: {', '.join(sorted(fields))}")
        example = fields[key]
        if example is not None and value is not None and not _same_kind(value, example):
            raise ZooError(f"{kind} {name!r}: argument {key!r} is {value!r} ({type(value).__name__}), "
                           f"expected {type(example).__name__} like {example!r}")


def _same_kind(value: Any, example: Any) -> bool:
    if isinstance(example, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(example, bool)
    if isinstance(example, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(example, float) or isinstance(value, int))
    if isinstance(example, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(example))
