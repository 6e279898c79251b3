"""Settings from the command line and from TOML files, read and written in one place.

One parser serves every ``KEY=VALUE`` flag (``--set``, ``--env-set``, ``--scenario-set``), one
reader every TOML file (its errors name the file), one writer every TOML file allocbench makes
(``best.toml``, ``preset.toml``), and one function turns ``--config`` + ``--set`` into each
strategy's hyper-parameters, refusing names it does not know instead of dropping them.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from allocbench.errors import ConfigError


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it (numbers, booleans, lists); anything else is
    the string itself, so ``name=foo`` needs no quotes."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignments(items: list[str], flag: str, form: str = "NAME=VALUE",
                      dotted: bool = False) -> list[tuple[str, Any]]:
    """``KEY=VALUE`` items of ``flag`` as (key, value) pairs, in order; ``dotted`` requires a
    ``A.B`` key."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        head, dot, tail = key.partition(".")
        if not sep or not key or (dotted and not (dot and head.strip() and tail.strip())):
            raise ConfigError(f"{flag} expects {form}, got {item!r}")
        out.append((key, parse_value(value.strip())))
    return out


def read_toml(path: Path, what: str = "TOML file") -> dict:
    """The parsed file, or one ConfigError that names it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} is a folder, not a file: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (numpy scalars included). TOML has no null: callers leave a
    None out."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def strategy_params(names: list[str], config: Path | None, sets: list[str]) -> dict[str, dict]:
    """Hyper-parameters of each strategy in ``names``: the ``[strategies.NAME]`` tables of the
    TOML file ``config``, then ``--set STRATEGY.PARAM=VALUE`` items (which win). A table or
    key the file should not have is an error, not a silent default."""
    from allocbench.strategy import strategy_names

    params: dict[str, dict] = {name: {} for name in names}
    if config is not None:
        table = read_toml(config, "config file")
        unexpected = [k for k in table if k != "strategies"]
        if unexpected or not isinstance(table.get("strategies", {}), dict):
            raise ConfigError(f"{config}: unexpected top-level key {', '.join(map(repr, unexpected)) or 'strategies'}; "
                              "a config file holds [strategies.NAME] tables")
        known = strategy_names()
        for name, values in table.get("strategies", {}).items():
            if name not in known:
                raise ConfigError(f"{config}: [strategies.{name}]: unknown strategy {name!r}; known: "
                                  f"{', '.join(known)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{config}: strategies.{name} must be a table of hyper-parameters")
            if name in params:
                params[name].update(values)
    for key, value in parse_assignments(sets, "--set", "STRATEGY.PARAM=VALUE", dotted=True):
        name, _, param = key.partition(".")
        if name not in params:
            raise ConfigError(f"--set {key}={value!r}: strategy {name!r} is not among --strategies "
                              f"({', '.join(names)})")
        params[name][param] = value
    return params


def check_bootstrap(n_boot: int, level: float, flag: str = "--n-boot", minimum: int = 10) -> None:
    """The bootstrap options of a command that reports intervals: enough resamples, a level
    in [0.5, 1)."""
    if n_boot < minimum:
        raise ConfigError(f"{flag} must be at least {minimum}, got {n_boot}")
    if not 0.5 <= level < 1:
        raise ConfigError(f"--level must be in [0.5, 1), got {level}")


def check_target(target: float | None, flag: str = "--target") -> None:
    if target is not None and not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise ConfigError(f"{flag} must be in (0, 1], got {target}")
