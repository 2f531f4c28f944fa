"""Run configuration files: ``zoo train TASK --config run.yaml|run.json`` and ``--print-config``.

A config file is a YAML or JSON mapping whose keys are the flags of `zoo train TASK` (``batch_size``,
``batch-size`` or ``--batch-size``; ``init_backbone`` or ``pretrained`` for ``--pretrained``) and whose
values have the type of the flag (a number for ``--lr``, a list for ``--logger``, a mapping for
``--head-args``, true/false for a switch, null for "not given"). :func:`config_defaults` checks the
file against the parser and returns its values by argparse ``dest``, which the command installs as
the parser's defaults, so every flag given on the command line still overrides the file. A run's
``args.json`` is such a file: ``--config runs/x/args.json --out runs/y`` repeats run ``x``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from tasks.engine.flags import json_object
from zoo.cli import did_you_mean
from zoo.errors import ZooError

NOT_SETTINGS = ("config", "print_config")     # flags about the config itself: never read from, nor written to, a file


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a ``.yaml``/``.yml``/``.json`` file; a missing, unparsable or non-mapping file is refused."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ZooError(f"--config {path}: unknown file type {suffix or '(none)'!r}; pass a .yaml, .yml or .json file")
    if not path.is_file():
        raise ZooError(f"--config {path}: no such file; pass a YAML or JSON file of flag values")
    text = path.read_text(encoding="utf-8")
    try:
        values = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ZooError(f"--config {path}: not valid {suffix[1:].upper()} ({' '.join(str(err).split())})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ZooError(f"--config {path}: expected a mapping of flag names to values, got {type(values).__name__}")
    return values


def config_defaults(parser: argparse.ArgumentParser, values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` (a config file's mapping) checked against ``parser`` and converted, keyed by argparse dest.

    An unknown key or a value of the wrong type raises one line naming ``source``, the key and the
    closest flag; numbers and strings go through the flag's own argparse type (so ranges are checked).
    """
    actions = _actions_by_name(parser)
    flags = sorted({max(a.option_strings, key=len) for a in actions.values()})
    resolved: dict[str, Any] = {}
    for key, value in values.items():
        action = actions.get(_normal(str(key)))
        if action is None:
            raise ZooError(f"{source}: unknown key {key!r} (it is no flag of this command)"
                           f"{did_you_mean('--' + _normal(str(key)).replace('_', '-'), flags)}")
        if action.dest in NOT_SETTINGS:
            continue
        flag = max(action.option_strings, key=len)
        try:
            resolved[action.dest] = _converted(action, value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
            raise ZooError(f"{source}: key {key!r} ({flag}): {err}") from None
    return resolved


def dump_config(values: dict[str, Any], fmt: str = "yaml") -> str:
    """``values`` (parsed flags by dest) as a YAML or JSON text that ``--config`` reads back to the same values."""
    settings = {key: value for key, value in values.items() if key not in NOT_SETTINGS}
    if fmt == "json":
        return json.dumps(settings, indent=1, default=str) + "\n"
    return yaml.safe_dump(json.loads(json.dumps(settings, default=str)), sort_keys=False, allow_unicode=True)


def _normal(key: str) -> str:
    return key.lstrip("-").replace("-", "_")


def _actions_by_name(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every flag's action under its dest and each of its long option names (underscored)."""
    named: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == argparse.SUPPRESS or action.default == argparse.SUPPRESS:
            continue                                   # positionals, --help
        named[action.dest] = action
        named.update({_normal(option): action for option in action.option_strings if option.startswith("--")})
    return named


def _converted(action: argparse.Action, value: Any) -> Any:
    """``value`` as the flag of ``action`` would have parsed it; raises naming the expected type."""
    if value is None:
        if action.default is None:
            return None
        raise TypeError(f"null is not allowed here (its default is {action.default!r}); leave the key out")
    if action.nargs == 0:                              # store_true switches
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if action.nargs in ("+", "*"):
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {value!r}")
        return [_scalar(action, item) for item in value]
    return _scalar(action, value)


def _scalar(action: argparse.Action, value: Any) -> Any:
    if isinstance(value, dict):
        if action.type is not json_object:
            raise TypeError(f"expected a single value, got a mapping {value!r}")
        return value
    if isinstance(value, (bool, list)) or (action.type is None and not isinstance(value, str)):
        wanted = "a string" if action.type is None else getattr(action.type, "__name__", "a single value")
        raise TypeError(f"expected {wanted}, got {value!r}")
    converted = action.type(str(value)) if action.type is not None else value
    if action.choices is not None and converted not in action.choices:
        choices = [str(c) for c in action.choices]
        raise ValueError(f"invalid choice {value!r} (choose from {', '.join(choices)})"
                         f"{did_you_mean(str(value), choices)}")
    return converted
