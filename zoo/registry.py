"""Registries of backbones, heads and tasks: a dict, a decorator, ``create`` and ``list``.

Entry points of the ``zoo.plugins`` group are imported on the first lookup miss (and before
any listing), which is how the project's own ``heads`` and ``tasks`` packages register, exactly
as a third-party package would. Names with a registered prefix (``timm/``, ``torchaudio/``)
are resolved lazily by a resolver function.
"""
from __future__ import annotations

import difflib
import fnmatch
from importlib import metadata
from typing import Any, Callable

PLUGIN_GROUP = "zoo.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module advertised in the ``zoo.plugins`` entry-point group (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry_point in metadata.entry_points(group=PLUGIN_GROUP):
        entry_point.load()


class Registry:
    """Named factories with metadata. ``register`` fails loudly on a duplicate name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}
        self._resolvers: dict[str, tuple[Callable[[str], Callable[..., Any]], Callable[[str], list[str]]]] = {}
        self._resolver_meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``fn`` under ``name`` with metadata ``meta``."""

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered (by {self._entries[name][0].__module__})")
            self._entries[name] = (fn, dict(meta))
            return fn

        return decorator

    def add_resolver(self, prefix: str, resolve: Callable[[str], Callable[..., Any]],
                     names: Callable[[str], list[str]], **meta: Any) -> None:
        """Resolve ``prefix/<rest>`` lazily: ``resolve(rest)`` returns a factory, ``names(pattern)`` lists;
        ``meta`` is the metadata of every name under the prefix."""
        self._resolvers[prefix] = (resolve, names)
        self._resolver_meta[prefix] = dict(meta)

    def _lookup(self, name: str) -> Callable[..., Any]:
        if name in self._entries:
            return self._entries[name][0]
        prefix, sep, rest = name.partition("/")
        if sep and prefix in self._resolvers:
            return self._resolvers[prefix][0](rest)
        if not _plugins_loaded:
            load_plugins()
            return self._lookup(name)
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown {self.kind} {name!r}{hint} (see `zoo list {self.kind}s`)")

    def get(self, name: str) -> Callable[..., Any]:
        """The factory registered under ``name`` (for tasks: the registered object itself)."""
        return self._lookup(name)

    def create(self, name: str, **args: Any) -> Any:
        """Call the factory registered under ``name`` with ``args``."""
        return self._lookup(name)(**args)

    def meta(self, name: str) -> dict[str, Any]:
        """Metadata registered with ``name`` (for resolver names: the metadata of their prefix)."""
        self._lookup(name)
        if name in self._entries:
            return dict(self._entries[name][1])
        return dict(self._resolver_meta.get(name.partition("/")[0], {}))

    def list(self, pattern: str = "*", **filters: Any) -> list[str]:
        """Sorted names matching a shell wildcard and equal to every metadata filter given."""
        load_plugins()
        prefix, sep, rest = pattern.partition("/")
        if sep and prefix in self._resolvers:
            return sorted(f"{prefix}/{n}" for n in self._resolvers[prefix][1](rest or "*"))
        return sorted(
            name for name, (_, meta) in self._entries.items()
            if fnmatch.fnmatchcase(name, pattern) and all(meta.get(k) == v for k, v in filters.items())
        )

    def __contains__(self, name: str) -> bool:
        try:
            self._lookup(name)
        except KeyError:
            return False
        return True


BACKBONES = Registry("backbone")
HEADS = Registry("head")
TASKS = Registry("task")
COMMANDS = Registry("command")   # `zoo train|eval|predict TASK`: fn(task, argv), meta parser(task|None)
