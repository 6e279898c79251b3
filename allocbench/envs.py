"""Environments by name, imported lazily so the core never imports sim or real."""

from __future__ import annotations

import importlib

from allocbench.errors import ConfigError
from allocbench.protocols import Environment

_FACTORIES = {"sim": "sim:make_env", "real": "real:make_env"}


def make_env(kind: str, scenario: str, seed: int, **overrides) -> Environment:
    if kind not in _FACTORIES:
        raise ConfigError(f"unknown environment {kind!r}; known: {', '.join(_FACTORIES)}")
    module, attr = _FACTORIES[kind].split(":")
    return getattr(importlib.import_module(module), attr)(scenario, seed=seed, **overrides)


def scenario_names(kind: str = "sim") -> list[str]:
    return importlib.import_module(kind).scenario_names()
