"""Inference settings: one way to change how a loaded model infers, for evaluate.py, sample.py and the tests.

A family's *settings* are the hyper-parameters it keeps as plain attributes (numbers, strings, lists,
or None), e.g. the diffusion model's ``sampler``, ``sample_steps`` or ``classify_pairs``: its
capabilities read them at call time, so they can change after the checkpoint is loaded. The entry
points take them under one config name, ``inference`` (``+inference.sample_steps=20``).

:func:`apply_settings` checks every setting against every given model before it sets anything, so a
typo cannot pass silently and a refused setting leaves every model as it was:

* a setting that none of the models has is an error naming the settings they do have;
* a value whose type differs from the attribute's is an error (an int is accepted for a float, and
  converted; a list for a list or tuple; None only where the constructor's default is None; an
  attribute that is None now accepts any plain value);
* a setting that only some of the models have is set on those, and the returned mapping says which.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from dgbench import DGBenchError

CONFIG_NAME = "inference"  # the config group of evaluate.py and sample.py: +inference.<setting>=value
PLAIN = (bool, int, float, str, list, tuple)


def settings_of(model: Any) -> dict[str, Any]:
    """The model's inference settings and their current values: hyper-parameters (``model.hparams``)
    that it keeps as plain attributes of its own."""
    hparams = getattr(model, "hparams", {}) or {}
    own = vars(model)
    return {k: own[k] for k in sorted(hparams) if k in own and (own[k] is None or isinstance(own[k], PLAIN))}


def _default_is_none(model: Any, name: str) -> bool:
    parameter = inspect.signature(type(model).__init__).parameters.get(name)
    return parameter is not None and parameter.default is None


def _fits(current: Any, value: Any) -> bool:
    """Whether ``value`` may replace ``current`` (the attribute's value now)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if current is None:
        return value is None or isinstance(value, PLAIN)
    if isinstance(current, bool):
        return isinstance(value, bool)
    if isinstance(current, int):
        return number and isinstance(value, int)
    if isinstance(current, float):
        return number
    if isinstance(current, str):
        return isinstance(value, str)
    return isinstance(value, list | tuple)


def _converted(current: Any, value: Any) -> Any:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    return value


def apply_settings(models: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Set ``settings`` ({name: value}) on each of ``models`` ({display name: model}) that has them.

    Returns {model name: {setting: value set}} for every model (empty where none applied). Raises
    DGBenchError, before any model is changed, for a setting none of the models has (naming those
    they have) or a value of the wrong type (see the module docstring).
    """
    available = {name: settings_of(model) for name, model in models.items()}
    for key, value in settings.items():
        holders = [name for name, own in available.items() if key in own]
        if not holders:
            existing = sorted({k for own in available.values() for k in own})
            raise DGBenchError(
                f"{CONFIG_NAME}.{key}: not a setting of {', '.join(models)}; "
                f"the settings are {', '.join(existing) or 'none'} (check the spelling)"
            )
        for name in holders:
            current, model = available[name][key], models[name]
            if value is None and current is not None and not _default_is_none(model, key):
                raise DGBenchError(f"{CONFIG_NAME}.{key}=null: {name}'s {key} cannot be null (it is {current!r})")
            if value is not None and not _fits(current, value):
                raise DGBenchError(
                    f"{CONFIG_NAME}.{key}={value!r} has the wrong type: "
                    f"{name}'s {key} takes {type(current).__name__} values (now {current!r})"
                )
    applied: dict[str, dict[str, Any]] = {name: {} for name in models}
    for key, value in settings.items():
        for name, own in available.items():
            if key in own:
                setattr(models[name], key, _converted(own[key], value))
                applied[name][key] = getattr(models[name], key)
    return applied
