"""A study's outputs: ``best.toml``, ``trials.csv``, the robustness table, the figure names,
and the summary lines. They are views of one study: ``best.toml``'s first line names the study
and its storage, so rerunning the command that wrote them refreshes them, while files of
another study are not replaced without ``--force``."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from allocbench.config import toml_value
from allocbench.schema import write_atomic
from allocbench.strategy import make_strategy
from allocbench.tune.config import TuneConfig, contour_params, fmt, seed_range
from allocbench.tune.objective import reference, score
from allocbench.tune.storage import storage_id
from allocbench.tune.study import counts, finished, reference_of

_HEADER = re.compile(r"^# allocbench tune: study '([A-Za-z0-9._-]+)' \((.*)\), best of ")


def best_toml(study, config: TuneConfig, storage: str) -> str:
    best = study.best_trial
    ref = reference_of(study)
    what = (f"mean rollouts to eval_acc >= {ref.target:.4f}" if config.minimise
            else f"mean accuracy over the first {ref.rollouts:,.0f} rollouts (AUC / R)")
    lines = [
        f"# allocbench tune: study {study.study_name!r} ({storage_id(storage)}), best of "
        f"{finished(study)} finished trials: trial {best.number}",
        f"# {config.strategy} on {config.env} scenario {config.scenario!r}, {config.resolved_steps()} steps, "
        f"{seed_range(0, config.seeds)}" + (f", overrides {dict(config.overrides)}" if config.overrides else ""),
        f"# objective {config.objective}: {what} = {fmt(best.value, config)}",
        f"# use: allocbench compare --config THIS_FILE --strategies grpo,{config.strategy} --scenario {config.scenario}",
        f"[strategies.{config.strategy}]",
    ]
    lines += [f"{name} = {toml_value(value)}" for name, value in best.params.items()]
    return "\n".join(lines) + "\n"


def outputs_owner(out: Path) -> tuple[str, str] | None:
    """(study name, storage) that wrote the outputs in folder ``out``, from its best.toml's
    first line; None without a readable best.toml."""
    try:
        with open(Path(out) / "best.toml", encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return None
    m = _HEADER.match(first)
    return (m.group(1), m.group(2)) if m else None


def owns_outputs(out: Path, study_name: str, storage: str) -> bool:
    """Whether the outputs in ``out`` are this study's (same name, same storage), so writing
    them again refreshes them rather than replacing something else."""
    return outputs_owner(out) == (study_name, storage_id(storage))


def trials_table(study) -> pd.DataFrame:
    df = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
    if "duration" in df:
        df["duration"] = df["duration"].dt.total_seconds()
        df = df.rename(columns={"duration": "duration_s"})
    return df


def robustness(study, config: TuneConfig, scenarios: list[str],
               log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """The best parameters and the strategy's defaults on the tuning scenario and ``scenarios``
    with fresh seeds K..2K-1; each scenario's target is grpo's peak there on those seeds (or
    the given target). gain: how much better tuned is than defaults (rollouts: default / tuned,
    a speed-up; auc: tuned / default); gain_gap: the tuning scenario's gain minus this one's."""
    K = config.seeds
    seeds = list(range(K, 2 * K))
    given = study.user_attrs.get("target_source") == "given"
    base = dataclasses.replace(config, target=config.target if given else None)
    tuned = make_strategy(config.strategy, **study.best_trial.params)
    default = make_strategy(config.strategy)
    rows = []
    for scenario in [config.scenario] + [s for s in scenarios if s != config.scenario]:
        if log:
            log(f"robustness: {scenario}, {seed_range(K, 2 * K)}")
        ref = reference(base, seeds, scenario)
        t = score(config, tuned, seeds, ref, scenario)
        d = score(config, default, seeds, ref, scenario)
        tv, dv = np.mean([r.value for r in t]), np.mean([r.value for r in d])
        rows.append({"scenario": scenario, "seeds": f"{seeds[0]}-{seeds[-1]}", "target": ref.target,
                     "grpo_rollouts": ref.rollouts, "tuned": tv, "default": dv,
                     "tuned_seeds_reached": sum(r.reached for r in t),
                     "default_seeds_reached": sum(r.reached for r in d),
                     "gain": dv / tv if config.minimise else tv / dv})
    out = pd.DataFrame(rows)
    out["gain_gap"] = out["gain"].iloc[0] - out["gain"]
    out.insert(1, "role", ["tuning"] + ["held-out"] * (len(out) - 1))
    return out


def figure_names(strategy: str) -> dict[str, str]:
    """File name of each tuning figure (kind -> name); the contour shows the strategy's
    declared pair (``Strategy.contour``), else its first two searched hyper-parameters."""
    names = {"optimization_history": "optimization_history.png", "param_importances": "param_importances.png"}
    pair = contour_params(strategy)
    if pair is not None:
        names["contour"] = f"contour_{pair[0]}_{pair[1]}.png"
    return names


def output_names(config: TuneConfig, with_robustness: bool) -> list[str]:
    names = ["best.toml", "trials.csv", *figure_names(config.strategy).values()]
    return names + (["robustness.csv"] if with_robustness else [])


def write_outputs(out: Path, files: dict[str, Callable[[str], None]]) -> list[Path]:
    """Write each file atomically, in order (best.toml, which names the study, first)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, write in files.items():
        write_atomic(out / name, write)
        written.append(out / name)
    return written


def summary(study, config: TuneConfig) -> str:
    c = counts(study)
    lines = [f"study {study.study_name}: {c['complete']} complete, {c['pruned']} pruned, "
             f"{c['failed']} failed" + (f", {c['running']} running" if c["running"] else "")
             + (f", {c['waiting']} waiting" if c["waiting"] else "")]
    ref = reference_of(study)
    if c["complete"]:
        best = study.best_trial
        defaults = [t for t in study.get_trials(deepcopy=False)
                    if t.user_attrs.get("defaults") and t.value is not None]
        unit = f"rollouts to {ref.target:.4f}" if config.minimise else "AUC / R"
        lines.append(f"best trial {best.number}: {unit} {fmt(best.value, config)}"
                     + (f" (defaults: {fmt(defaults[0].value, config)}; grpo spends {ref.rollouts:,.0f} "
                        f"over the run)" if defaults else ""))
        lines.append("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in best.params.items()))
    return "\n".join(lines)
