"""Command-line checks before Hydra runs: a bad override is one line and exit status 2.

Hydra reports an unknown config option or key in a dozen lines, and accepts a value of the wrong
type (``trainer.max_epochs=abc``) until the code that reads it fails somewhere deep. This module
composes the command line first, as Hydra would, and checks every override against:

* the options that exist (``model=foo`` -> the files in ``configs/model/``);
* the keys that exist (``data.batch_sizee=3`` -> did you mean ``data.batch_size``?);
* the type the value feeds: the annotation of the ``_target_`` parameter it sets when there is
  one (``trainer.max_epochs`` is ``Trainer(max_epochs: int | None)``), else the default's type.

Hydra's own flags (``--cfg``, ``--info``, ...) and ``hydra.*`` overrides are left to Hydra.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
import types
import typing
from pathlib import PurePath
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from dgbench import DGBenchError
from dgbench.runtime import CONFIG_DIR, exit_with, register_resolvers


def check_command_line(config_name: str, argv: list[str] | None = None) -> None:
    """Exit with one line on stderr if an override on the command line is wrong."""
    try:
        check_overrides(config_name, sys.argv[1:] if argv is None else argv)
    except DGBenchError as err:
        exit_with(err)


def check_overrides(config_name: str, args: list[str]) -> None:
    if any(arg.startswith("-") and arg not in ("-m", "--multirun") for arg in args):
        return  # Hydra's own flags, e.g. --cfg job: the user is inspecting, Hydra answers
    texts = [arg for arg in args if not arg.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(texts)
    except HydraException as err:
        message = str(err).strip().splitlines()[0]
        raise DGBenchError(
            f"cannot parse the overrides ({message}): write key=value, e.g. trainer.max_epochs=3"
        ) from None
    overrides = [o for o in overrides if not o.key_or_group.startswith("hydra")]
    groups = [o for o in overrides if (CONFIG_DIR / o.key_or_group).is_dir()]
    for override in groups:
        for option in _values(override):
            _check_option(override.key_or_group, option)

    register_resolvers()
    first_choices = [_first_choice(o) for o in groups if not o.is_delete() and _values(o)]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        try:
            base = compose(config_name=config_name, overrides=first_choices)
        except HydraException as err:
            raise DGBenchError(str(err).strip().splitlines()[0]) from None
    for override in overrides:
        if override not in groups and not override.is_delete() and not override.is_force_add():
            _check_value(base, override)


def _values(override: Override) -> list[Any]:
    """The value of an override, or each value of a sweep (``-m model=resnet,vae``)."""
    if not override.is_sweep_override():
        return [override.value()]
    try:
        return list(override.sweep_iterator())
    except Exception:  # interval sweeps have no finite list of values; the launcher checks them
        return []


def _first_choice(override: Override) -> str:
    if not override.is_sweep_override():
        return override.input_line
    prefix = "++" if override.is_force_add() else "+" if override.is_add() else ""
    return f"{prefix}{override.get_key_element()}={_values(override)[0]}"


def _check_option(group: str, option: Any) -> None:
    options = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    if option is not None and str(option) not in options:
        raise DGBenchError(f"unknown {group} {option!r}: choose one of {', '.join(options)} (configs/{group}/)")


def _check_value(base: DictConfig, override: Override) -> None:
    key = override.key_or_group
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(base, parent_key) if parent_key else base
    exists = isinstance(parent, DictConfig) and leaf in parent
    if override.is_add():
        if exists:
            raise DGBenchError(f"{key} already exists: drop the '+' ({key}=...) to change it")
        return
    if not exists:
        siblings = (
            [f"{parent_key}.{k}" if parent_key else str(k) for k in parent] if isinstance(parent, DictConfig) else []
        )
        close = difflib.get_close_matches(key, siblings, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise DGBenchError(f"no setting {key} in the config: {hint}to add a new key write +{override.input_line}")
    if OmegaConf.is_interpolation(parent, leaf):
        return  # e.g. precision: ${auto_precision:...}; the resolver judges the value
    default = parent[leaf]
    expected = _annotation(parent, leaf)
    for value in _values(override):
        if isinstance(value, str) and value.startswith("${"):
            continue
        if expected is not None:
            if not _fits(value, expected):
                raise DGBenchError(f"{key}={value!r} has the wrong type: expected {_describe(expected)}")
        elif not _same_kind(default, value):
            raise DGBenchError(
                f"{key}={value!r} has the wrong type: expected {type(default).__name__} like the default {default!r}"
            )


def _annotation(parent: DictConfig, leaf: str) -> Any | None:
    """The type annotation of the ``_target_`` parameter that ``parent.leaf`` sets, if there is one."""
    target = parent.get("_target_")
    if not isinstance(target, str):
        return None
    try:
        module_name, _, attr = target.rpartition(".")
        factory = getattr(importlib.import_module(module_name), attr)
        function = factory.__init__ if inspect.isclass(factory) else factory
        return typing.get_type_hints(function).get(leaf)
    except Exception:  # unimportable target or unresolvable annotations: fall back to the default's type
        return None


def _fits(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple) or annotation in (list, tuple):
        return isinstance(value, list | tuple)
    if inspect.isclass(annotation):  # e.g. Tensor, Path: a value from the command line is a str or number
        return isinstance(value, annotation) or (isinstance(value, str) and issubclass(annotation, PurePath))
    return True  # anything richer (callables, protocols): the constructor judges


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _same_kind(default: Any, value: Any) -> bool:
    """Without an annotation: a number stays a number, a flag stays a flag; null accepts anything."""
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, DictConfig | dict):
        return isinstance(value, dict)
    return True
