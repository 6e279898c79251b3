"""``allocbench figures RESULTS_DIR --out DIR``: every results table under RESULTS_DIR into
publication figures (PNG + PDF), CSVs of the statistics behind them, and a Markdown (and
HTML) report that embeds the PNGs.

What is read: ``runs.parquet`` (or ``runs.csv`` where a folder has no parquet) in any
sub-folder, sim and real rows alike, and Optuna trials CSVs (``allocbench tune``'s
``trials.csv``: ``params_<name>`` and ``value`` columns). Folders whose name starts with a dot,
and the --out folder, are not searched.

How tables are combined. A run is (env, scenario, strategy, seed) at one hyper-parameter
setting (its ``hp_*`` values); the same run found in two folders is kept once (the longer one).
An *arm* is a strategy at one setting. Per (env, scenario), the main comparison (figures 1-5)
takes for each strategy the arm with the most seeds (ties: the arm from the folder with the most
strategies, then the first folder by name); arms of a strategy that differ in
``hp_pilot_fraction`` feed the pilot-fraction ablation.

The command line (``cli/figures.py``) calls ``build_report``.
"""

from __future__ import annotations

import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from allocbench.errors import ConfigError

RUN = ["env", "scenario", "strategy", "seed"]
FORMATS = ("png", "pdf")
DPI = 300


# --- finding and reading tables ---------------------------------------------------------------

def _searched(root: Path, pattern: str, skip: Path | None) -> list[Path]:
    found = []
    for p in sorted(root.rglob(pattern)):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts[:-1]):
            continue
        if skip is not None and p.resolve().is_relative_to(skip):
            continue
        found.append(p)
    return found


def find_inputs(root: Path, skip: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(results tables, Optuna trials CSVs) under ``root``; a folder with both runs.parquet
    and runs.csv contributes the parquet."""
    root = Path(root)
    if not root.exists():
        raise ConfigError(f"results folder does not exist: {root}")
    if not root.is_dir():
        raise ConfigError(f"RESULTS_DIR is a file, not a folder: {root}")
    skip = skip.resolve() if skip is not None else None
    parquet = _searched(root, "runs.parquet", skip)
    with_parquet = {p.parent for p in parquet}
    tables = parquet + [p for p in _searched(root, "runs.csv", skip) if p.parent not in with_parquet]
    trials = []
    for p in _searched(root, "*.csv", skip):
        if p.name == "runs.csv":
            continue
        try:
            header = pd.read_csv(p, nrows=0).columns
        except Exception:  # not a table of ours; other CSVs may sit in a results folder
            continue
        if "value" in header and any(c.startswith("params_") for c in header):
            trials.append(p)
    return sorted(tables), trials


def read_tables(root: Path, paths: list[Path], scenario: tuple[str, str] | None = None) -> pd.DataFrame:
    """Every table, schema-checked, with ``_source`` (its folder relative to ``root``); with
    ``scenario`` (env, name) only that scenario's rows."""
    parts = []
    for path in paths:
        t = read_one(root, path)
        if scenario is not None:
            t = t[(t["env"] == scenario[0]) & (t["scenario"] == scenario[1])]
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def read_one(root: Path, path: Path) -> pd.DataFrame:
    """One table, schema-checked, with ``_source``; ConfigError names a bad or empty one."""
    from allocbench.schema import read_table

    try:
        t = read_table(path)
    except Exception as e:  # schema errors, truncated parquet, unparsable CSV
        raise ConfigError(f"{path}: not a valid results table: {e}") from None
    if t.empty:
        raise ConfigError(f"{path}: the results table has no rows")
    t["_source"] = str(path.parent.relative_to(root)) if path.parent != root else "."
    return t


@dataclass
class TableFacts:
    """What the report needs of a table before its scenarios are drawn one at a time: its
    folder, the strategies in it and, per (env, scenario), the strategies, seeds and steps."""

    source: str
    strategies: int
    scenarios: dict  # (env, scenario) -> (strategies in order, seeds, last step)


def table_facts(root: Path, paths: list[Path], order) -> dict[Path, TableFacts]:
    """Each table read once and summarised (``order`` sorts strategy names). A results tree can
    hold millions of rows: the report reads the tables again scenario by scenario rather than
    holding them all at once."""
    facts = {}
    for path in paths:
        t = read_one(root, path)
        facts[path] = TableFacts(
            str(t["_source"].iloc[0]), int(t["strategy"].nunique()),
            {(str(e), str(sc)): (order(h["strategy"]), int(h["seed"].nunique()), int(h["step"].max()))
             for (e, sc), h in t.groupby(["env", "scenario"], sort=True)})
    return facts


def group_logs(root: Path, main: pd.DataFrame) -> pd.DataFrame | None:
    """The per-group logs (groups.parquet) of the runs in ``main``, from the folders its tables
    came from; None where there are none."""
    parts = []
    for source in main["_source"].unique():
        path = Path(root) / source / "groups.parquet"
        if path.is_file():
            g = pd.read_parquet(path)
            runs = main[main["_source"] == source][["strategy", "seed"]].drop_duplicates()
            parts.append(g.merge(runs, on=["strategy", "seed"]))
    return pd.concat(parts, ignore_index=True) if parts else None


def read_trials(path: Path) -> tuple[pd.DataFrame, str | None]:
    """A trials CSV and the objective named in a best.toml beside it (None if absent)."""
    try:
        trials = pd.read_csv(path)
    except Exception as e:
        raise ConfigError(f"{path}: not a readable trials CSV: {e}") from None
    objective = None
    best = path.parent / "best.toml"
    if best.is_file():
        m = re.search(r"^# objective (\w+)", best.read_text(errors="replace"), re.M)
        objective = m.group(1) if m else None
    return trials, objective


# the columns of a scenario's main runs the sim-vs-real section reads, kept for every scenario
RANKING_COLUMNS = ["env", "scenario", "strategy", "seed", "step", "eval_acc", "cum_rollouts"]


# --- runs and arms ----------------------------------------------------------------------------

def hp_columns(table: pd.DataFrame) -> list[str]:
    return sorted(c for c in table.columns if c.startswith("hp_"))


def _signature(table: pd.DataFrame) -> pd.Series:
    """Per row, its strategy's hyper-parameters as text ("pilot_n=4, ..."). Each distinct
    (strategy, values) is signed once: a results tree holds millions of rows but few settings,
    and boxing every row's values as Python objects took most of ``allocbench figures``' memory
    and time."""
    cols = hp_columns(table)
    if not cols:
        return pd.Series("", index=table.index)
    row_hash = np.zeros(len(table), dtype=np.uint64)
    for c in ["strategy", *cols]:  # rows with equal values (NaN equal to NaN) hash alike
        row_hash = row_hash * np.uint64(1_000_003) ^ pd.util.hash_array(table[c].to_numpy())
    codes, _ = pd.factorize(row_hash)
    rows = table.iloc[np.unique(codes, return_index=True)[1]]  # the first row of each setting, in code order
    hp = _with_defaults(rows, rows[cols].astype(object).where(rows[cols].notna(), None))
    signed = hp.apply(lambda r: ", ".join(f"{c[3:]}={_plain(v)}" for c, v in zip(cols, r) if v is not None), axis=1)
    return pd.Series(signed.to_numpy()[codes], index=table.index)


def _with_defaults(table: pd.DataFrame, hp: pd.DataFrame) -> pd.DataFrame:
    """``hp`` with the values a table lacks (a hyper-parameter added to a strategy after the
    table was written) read as the strategy's default, so old and new runs at one setting are
    one arm; strategies this version does not know keep theirs."""
    from dataclasses import MISSING, fields

    from allocbench.strategy import strategy_class, strategy_names

    known = set(strategy_names())
    for name in set(table["strategy"].astype(str)) & known:
        rows = (table["strategy"] == name).to_numpy()
        for f in fields(strategy_class(name)):
            col = f"hp_{f.name}"
            if col in hp.columns and f.default is not MISSING:
                hp.loc[rows & hp[col].isna().to_numpy(), col] = f.default
    return hp


def _plain(value):
    """A whole float as an int: a column that some tables lack is read as float."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def arms(table: pd.DataFrame, width: pd.Series | None = None) -> pd.DataFrame:
    """``table`` with ``_arm`` (env/scenario/strategy/hp signature) and one copy of each run:
    a run found in several folders is kept from the one where it has most rows (then the folder
    with most strategies, ``width`` per ``_source`` when the table is part of its folders', then
    the first by name)."""
    t = table.assign(_sig=_signature(table))
    t["_arm"] = (t["env"].astype(str) + "|" + t["scenario"].astype(str) + "|" + t["strategy"].astype(str)
                 + "|" + t["_sig"])
    width = t.groupby("_source")["strategy"].nunique() if width is None else width
    runs = t.groupby(["_arm", "seed", "_source"]).size().rename("rows").reset_index()
    runs["width"] = runs["_source"].map(width)
    runs = runs.sort_values(["_arm", "seed", "rows", "width", "_source"],
                            ascending=[True, True, False, False, True])
    keep = runs.drop_duplicates(["_arm", "seed"])[["_arm", "seed", "_source"]]
    return t.merge(keep, on=["_arm", "seed", "_source"])


def main_arms(t: pd.DataFrame, width: pd.Series | None = None) -> pd.DataFrame:
    """Per (env, scenario, strategy): the rows of the arm with most seeds (ties: the arm whose
    runs come from the folder with most strategies, ``width`` as in ``arms``, then the first
    folder by name)."""
    width = t.groupby("_source")["strategy"].nunique() if width is None else width
    info = (t.groupby(["env", "scenario", "strategy", "_arm"])
              .agg(seeds=("seed", "nunique"), source=("_source", "min")).reset_index())
    info["width"] = info["source"].map(width)
    info = info.sort_values(["seeds", "width", "source", "_arm"], ascending=[False, False, True, True])
    chosen = info.drop_duplicates(["env", "scenario", "strategy"])["_arm"]
    return t[t["_arm"].isin(set(chosen))]


def ablation_arms(t: pd.DataFrame, main: pd.DataFrame, param: str = "pilot_fraction") -> pd.DataFrame:
    """For each strategy with several values of hp_<param>: per value the arm with most seeds
    (the main arm where it has that value); plus the main arms of the other strategies."""
    col = f"hp_{param}"
    if col not in t.columns:
        return t.iloc[:0]
    varied = t[t[col].notna()].groupby("strategy")[col].nunique()
    varied = set(varied[varied >= 2].index)
    if not varied:
        return t.iloc[:0]
    main_ids = set(main["_arm"])
    info = (t[t["strategy"].isin(varied)].groupby(["strategy", col, "_arm"])
              .agg(seeds=("seed", "nunique"), source=("_source", "min")).reset_index())
    info["main"] = info["_arm"].isin(main_ids)
    info = info.sort_values(["main", "seeds", "source", "_arm"], ascending=[False, False, True, True])
    chosen = set(info.drop_duplicates(["strategy", col])["_arm"])
    return pd.concat([t[t["_arm"].isin(chosen)], main[~main["strategy"].isin(varied)]])


# --- the report -------------------------------------------------------------------------------

@dataclass
class Report:
    """Blocks rendered to Markdown and HTML, and the files to write."""

    blocks: list = field(default_factory=list)
    files: dict = field(default_factory=dict)  # name -> bytes
    figure_count: int = 0

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def items(self, items: list[str]):
        if items:
            self.blocks.append(("ul", items))

    def table(self, df: pd.DataFrame):
        self.blocks.append(("table", df))

    def skip(self, what: str, why: str):
        self.blocks.append(("skip", what, why))

    def figure(self, name: str, fig, caption: str, formats):
        import matplotlib.pyplot as plt

        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=DPI)
            self.files[f"{name}.{fmt}"] = buf.getvalue()
        plt.close(fig)
        self.figure_count += 1
        self.blocks.append(("fig", name, f"Figure {self.figure_count}. {caption}",
                            [f"{name}.{f}" for f in formats]))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"{'#' * b[1]} {b[2]}")
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {i}" for i in b[1]))
            elif b[0] == "skip":
                out.append(f"> Skipped: {b[1]}: {b[2]}")
            elif b[0] == "table":
                out.append(_md_table(b[1]))
            elif b[0] == "fig":
                _, name, caption, files = b
                links = " · ".join(f"[{f.rsplit('.', 1)[1].upper()}]({f})" for f in files)
                out.append(f"![{name}]({name}.png)\n\n*{caption}* {links}")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        esc = lambda s: re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(s))  # noqa: E731
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:52em;margin:2em auto;padding:0 1em;"
               "line-height:1.45}img{max-width:100%;width:34em}figure{margin:1.5em 0}"
               "figcaption{font-size:.92em;color:#333}table{border-collapse:collapse;font-size:.9em}"
               "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}"
               ".skip{color:#8a5a00}</style></head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{esc(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{esc(b[1])}</p>")
            elif b[0] == "ul":
                out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in b[1]) + "</ul>")
            elif b[0] == "skip":
                out.append(f"<p class='skip'>Skipped: {esc(b[1])}: {esc(b[2])}</p>")
            elif b[0] == "table":
                out.append(b[1].to_html(index=False, border=0, na_rep="–"))
            elif b[0] == "fig":
                _, name, caption, files = b
                links = " · ".join(f"<a href='{f}'>{f.rsplit('.', 1)[1].upper()}</a>" for f in files)
                out.append(f"<figure><img src='{name}.png' alt='{html.escape(name)}'>"
                           f"<figcaption>{esc(caption)} {links}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _md_table(df: pd.DataFrame) -> str:
    cells = df.astype(object).where(df.notna(), "–").astype(str)
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in cells.itertuples(index=False)])


def _slug(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", p).strip("-") for p in parts)


def _fmt_ci(pt: float, lo: float, hi: float, digits: int = 2) -> str:
    if not math.isfinite(pt):
        return "not reached"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{pt:.{digits}f}"
    return f"{pt:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _draw(rep: Report, what: str, name: str, caption: str, formats, make):
    """Draw one figure; a NoData (data absent) becomes a skip line in the report."""
    from analysis.figures import NoData

    try:
        fig = make()
    except NoData as e:  # its message reads "figure: reason"
        head, sep, reason = str(e).partition(": ")
        rep.skip(what, reason if sep else str(e))
        return None
    rep.figure(name, fig, caption, formats)
    return fig


def _target(main: pd.DataFrame, given: float | None) -> tuple[float | None, str, float | None]:
    """(the target, why, what the bootstrap holds fixed: None for grpo's peak, which every
    draw recomputes)."""
    from allocbench.metrics import default_target, mean_curve

    if given is not None:
        return given, "given with --target", given
    if "grpo" in set(main["strategy"]):
        try:
            return (default_target(main), "the peak of grpo's seed-mean accuracy curve (in every bootstrap draw, "
                    "the redrawn curve's)", None)
        except ValueError:
            pass
    peaks = mean_curve(main).groupby("strategy")["eval_acc"].max()
    if peaks.empty:
        return None, "no evaluated steps", None
    lowest = float(peaks.min())
    return lowest, ("no grpo runs: the lowest of the strategies' peak seed-mean accuracies, so that every "
                    "strategy reaches it"), lowest


def build_report(results: Path, out: Path, force: bool = False, target: float | None = None,
                 n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                 formats=FORMATS, progress: bool = False) -> list[Path]:
    """Read every table under ``results``, write figures, CSVs and report.md/.html to ``out``;
    return the paths written. ``progress``: a bar on stderr, one tick per (env, scenario).
    Raises ConfigError for a missing folder, no tables, a malformed table, or files in ``out``
    that would be overwritten without ``force``."""
    from analysis import figures as F
    from analysis import stats
    from allocbench.progress import progress_bar
    from allocbench.schema import writable, write_atomic

    results, out = Path(results), Path(out)
    writable(out, ["report.md"], force)  # fail before drawing; all files are checked below
    table_paths, trial_paths = find_inputs(results, skip=out)
    if not table_paths and not trial_paths:
        raise ConfigError(f"no results tables (runs.parquet / runs.csv) or Optuna trials CSVs under {results}")
    pct = f"{level:.0%}"
    rep = Report()
    rep.h(1, "allocbench figures")
    rep.p(f"From `{results}`: {len(table_paths)} results table(s), {len(trial_paths)} Optuna trials CSV(s). "
          f"Intervals are {pct} confidence intervals. Curves: seed mean per step with a two-sided "
          "Student-t interval of that mean over seeds. Rollouts to target and speed-ups: read off "
          f"the seed-mean curve (the first evaluation whose seed mean reaches the target), with a percentile bootstrap over seeds ({n_boot} "
          f"resamples, bootstrap seed {seed}; seeds redrawn jointly across strategies when they share "
          "seeds, since in the simulator a seed fixes the prompt pool). Resamples in which a curve "
          "never reaches the target are left out of an interval; the share kept is listed.")
    speed_rows, rank_rows = [], []
    mains: dict[tuple[str, str], tuple[pd.DataFrame, float | None]] = {}

    if table_paths:
        facts = table_facts(results, table_paths, F.order)
        rep.h(2, "Tables read")
        rep.items([f"`{f.source}`: " + "; ".join(
            f"{e} · {sc}: {', '.join(names)}; {seeds} seeds, up to {last} steps"
            for (e, sc), (names, seeds, last) in f.scenarios.items())
            for f in sorted(facts.values(), key=lambda f: f.source)])
        width = pd.Series({f.source: f.strategies for f in facts.values()})
        keys = sorted({k for f in facts.values() for k in f.scenarios}, key=lambda k: (k[0] != "sim", k))
        # a results tree of many scenarios takes minutes
        bar = progress_bar(keys, unit="scenario", desc=f"figures from {results}", disable=not progress)
        for env, scenario in bar:  # sim first; one scenario's tables in memory at a time
            t = arms(read_tables(results, [p for p, f in facts.items() if (env, scenario) in f.scenarios],
                                 scenario=(env, scenario)), width)
            main = main_arms(t, width)
            tag = _slug(env, scenario)
            tgt, why, boot_tgt = _target(main, target)
            mains[(env, scenario)] = (main[RANKING_COLUMNS].copy(), tgt, boot_tgt)
            seeds = main.groupby("strategy")["seed"].nunique()
            rep.h(2, f"{env} · {scenario}")
            rep.p("Main comparison: " + ", ".join(
                f"{s} ({seeds[s]} seeds; from `{main.loc[main['strategy'] == s, '_source'].iloc[0]}`)"
                for s in F.order(main["strategy"])) + "." + (
                f" Target accuracy {tgt:.4f}: {why}." if tgt is not None else ""))
            other = t[~t["_arm"].isin(set(main["_arm"]))]
            if not other.empty:
                rep.p(f"{other['_arm'].nunique()} other hyper-parameter setting(s) of "
                      f"{', '.join(F.order(other['strategy']))} in these tables are left out of this "
                      "section's figures but for the pilot-fraction ablation, where they vary the pilot "
                      "fraction.")
            ts = f"{main['seed'].nunique()} seeds"
            _draw(rep, "accuracy vs rollouts", f"accuracy_vs_rollouts__{tag}",
                  f"Held-out accuracy against cumulative rollouts ({env}, {scenario}): seed mean per "
                  f"strategy ({ts}); the band is a {pct} Student-t confidence interval of the mean over "
                  "seeds; the dashed line is the target accuracy.", formats,
                  lambda: F.accuracy_vs_rollouts(main, tgt, level=level))
            _draw(rep, "accuracy vs tokens", f"accuracy_vs_tokens__{tag}",
                  "Held-out accuracy against cumulative generated tokens (the cost of a rollout grows with "
                  f"its length); seed mean with a {pct} Student-t band over seeds.",
                  formats, lambda: F.accuracy_vs_tokens(main, tgt, level=level))
            if tgt is None:
                rep.skip("speed-ups", "no target accuracy (no evaluated steps)")
            else:
                sp = stats.speedup_ci(main, boot_tgt, F.REFERENCES, n_boot=n_boot, level=level, seed=seed)
                if sp.empty:
                    rep.skip("speed-ups", "neither grpo nor dapo runs in these tables")
                else:
                    _draw(rep, "speed-ups", f"speedup__{tag}",
                          f"Speed-up in rollouts to the target accuracy {tgt:.3f} over grpo and dapo "
                          "(rollouts_reference / rollouts_strategy on the seed-mean curves; >1 = fewer "
                          f"rollouts). Error bars: {pct} percentile-bootstrap interval over seeds "
                          f"({n_boot} resamples); with few seeds the interval is coarse.", formats,
                          lambda: F.speedup_bars(main, tgt, speedups=sp))
                    sp = sp.assign(env=env, scenario=scenario)
                    speed_rows.append(sp)
                    cis = sp[["speedup", "low", "high"]].itertuples(index=False)
                    rep.table(pd.DataFrame({
                        "strategy": sp["strategy"], "vs": sp["reference"],
                        "rollouts to target": sp["rollouts"].map(
                            lambda v: f"{v:,.0f}" if math.isfinite(v) else "not reached"),
                        f"speed-up [{pct} CI]": [_fmt_ci(*r) for r in cis],
                        "resamples kept": sp["valid"].map(lambda v: f"{v:.0%}")}))
            _draw(rep, "learning signal vs group variance", f"signal_vs_variance__{tag}",
                  "Why allocation works: each step's learning signal (`learn_signal`, the batch-mean "
                  "advantage signal of the update) against the mean reward variance of the groups it "
                  "trained on, pooled over strategies and seeds (dots: steps, coloured by strategy; line: "
                  "median per variance bin, band: interquartile range). Group updates carry most signal "
                  "when the groups' rewards vary. Caveat: in the simulator this relation holds by "
                  "construction -- its learner's signal is the rollout-weighted mean group reward std "
                  "sum(n_g sigma_g)/N, a monotone function of the variances -- so the figure shows where "
                  "each strategy operates on that curve, not independent evidence for it; the real "
                  "environment's rows test it.", formats,
                  lambda: F.signal_vs_variance(main))
            _draw(rep, "prompt shares", f"prompt_shares__{tag}",
                  "Top to bottom: the share of held-out prompts the policy never solves (pass rate <= "
                  "0.05, all-0 groups) and always solves (>= 0.95, all-1 groups) as training spends "
                  "rollouts, and the share of trained groups whose rewards were all equal (zero variance, "
                  "no gradient) per step (rolling mean over 10 steps); a panel whose data is absent is left "
                  f"out. Seed mean with a {pct} Student-t band over seeds.", formats,
                  lambda: F.prompt_shares(main, level=level))
            _draw(rep, "budget anatomy", f"budget_anatomy__{tag}",
                  "Where the rollouts of a step go (per-step means, averaged over steps and seeds). Left "
                  "bar of each strategy, by use: trained in groups with reward variance (informative), "
                  "trained in zero-variance groups (wasted: zero_var_groups x mean group size), generated "
                  "but not trained this step (filtered, screened out or buffered); right bar, by kind: "
                  "pilot (screening) vs main/commit rollouts. Bottom: generation rounds (batched sampler "
                  f"calls, i.e. sequential latency) per step, error bars a {pct} t-interval over seeds.",
                  formats, lambda: F.budget_anatomy(main, level=level))
            logs = group_logs(results, main)
            if logs is None:
                rep.skip("trained rollouts by difficulty", "no groups.parquet beside these tables "
                         "(real runs write one; add --log-groups to a sim compare)")
            else:
                _draw(rep, "trained rollouts by difficulty", f"trained_by_difficulty__{tag}",
                      "From the per-group log (groups.parquet): the share of each strategy's generated "
                      "(left) and trained (right) rollouts by what the environment knew of the prompt when "
                      "it was sampled (real: its arithmetic level; sim: its true pass rate, in bins). A "
                      "strategy that screens shifts its trained rollouts toward prompts of middle difficulty.",
                      formats, lambda: F.trained_by_difficulty(logs))
            abl = ablation_arms(t, main)
            if abl.empty:
                rep.skip("pilot-fraction ablation", "the tables hold fewer than two values of "
                         "hp_pilot_fraction for every strategy (run `allocbench compare --set "
                         "pilot_commit.pilot_fraction=...` into several folders)")
            elif tgt is not None:
                _draw(rep, "pilot-fraction ablation", f"pilot_fraction_ablation__{tag}",
                      f"Pilot-fraction ablation: rollouts to the target {tgt:.3f} against the share of a "
                      "trained group's rollouts spent on the pilot (pilot_n / (pilot_n + commit_n)), each "
                      f"point from one compare run set; error bars and bands: {pct} percentile-bootstrap "
                      "intervals over seeds; dashed lines: grpo and dapo.", formats,
                      lambda: F.pilot_fraction_ablation(abl, tgt, n_boot=n_boot, level=level, seed=seed))

        # 7. sim vs real
        sims = [k for k in mains if k[0] == "sim"]
        reals = [k for k in mains if k[0] == "real"]
        rep.h(2, "Sim-vs-real ranking agreement")
        if not sims or not reals:
            rep.skip("sim-vs-real ranking", "needs both env=sim and env=real tables; found "
                     + (", ".join(sorted({k[0] for k in mains})) or "none"))
        # every simulated scenario against every real one: on a big tree the longest part
        pairs = [(ks, kr) for ks in sims for kr in reals]
        for ks, kr in progress_bar(pairs, unit="pair", desc="sim-vs-real rankings",
                                   disable=not progress or not pairs):
            (ms, ts_, boot_ts), (mr, tr_, boot_tr) = mains[ks], mains[kr]
            both = pd.concat([ms, mr])
            common = set(pd.unique(ms["strategy"])) & set(pd.unique(mr["strategy"]))
            what = f"sim-vs-real ranking ({ks[1]} vs {kr[1]})"
            if len(common) < 2 or ts_ is None or tr_ is None:
                rep.skip(what, f"{len(common)} strategies in both (needs 2) or no target")
                continue
            both = both[both["strategy"].isin(common)]
            agree = stats.rank_agreement(ms[ms["strategy"].isin(common)], mr[mr["strategy"].isin(common)],
                                         boot_ts, boot_tr, n_boot=n_boot, level=level, seed=seed)
            _draw(rep, what, f"sim_vs_real_ranks__{_slug(ks[1], kr[1])}",
                  f"Each strategy's rank by rollouts to target in the simulator ({ks[1]}, target "
                  f"{ts_:.3f}) against its rank in the real environment ({kr[1]}, target {tr_:.3f}); "
                  "rank 1 = fewest rollouts, a strategy that never reaches the target ranks last. "
                  f"Kendall's tau-b = {agree['tau']:.2f} with a {pct} percentile-bootstrap interval "
                  f"[{agree['low']:.2f}, {agree['high']:.2f}] (seeds redrawn within each environment, "
                  f"{n_boot} resamples); a simulator ranking exactly as the real point estimate "
                  f"would get [{agree['ceiling_low']:.2f}, {agree['ceiling_high']:.2f}] at these real "
                  "seeds. With k strategies tau takes few values; "
                  f"k = {len(common)} here.", formats,
                  lambda: F.sim_vs_real_ranks(both, {"sim": ts_, "real": tr_}, agreement=agree,
                                              level=level))
            for s, a, b in zip(agree["strategies"], agree["sim_rank"], agree["real_rank"]):
                rank_rows.append({"sim_scenario": ks[1], "real_scenario": kr[1], "strategy": s,
                                  "sim_rank": a, "real_rank": b, "tau": agree["tau"],
                                  "tau_low": agree["low"], "tau_high": agree["high"]})
    else:
        rep.skip("figures 1-5 and 7", "no results tables (runs.parquet / runs.csv) found")

    # trials CSVs
    if trial_paths:
        rep.h(2, "Optuna trials")
    for path in trial_paths:
        trials, objective = read_trials(path)
        rel = str(path.relative_to(results))
        label = {"rollouts": "rollouts to target\n(trial mean over seeds)",
                 "auc": "accuracy over budget\n(AUC / R)"}.get(objective, "trial objective (value)")

        def make(trials=trials, rel=rel, label=label):
            fig = F.trials_vs_param(trials, title=rel)
            fig.axes[0].set_ylabel(label)
            return fig
        folder = "root" if path.parent == results else str(path.parent.relative_to(results))
        _draw(rep, f"pilot-fraction trials ({rel})", f"trials_pilot_fraction__{_slug(folder)}",
              f"Optuna trials of `{rel}`: each completed trial's objective ({objective or 'unknown'}) "
              "against its pilot fraction; other hyper-parameters vary between trials too.", formats, make)

    if speed_rows:
        rep.files["speedups.csv"] = pd.concat(speed_rows).to_csv(index=False).encode()
    if rank_rows:
        rep.files["rank_agreement.csv"] = pd.DataFrame(rank_rows).to_csv(index=False).encode()
    rep.files["report.md"] = rep.markdown().encode()
    rep.files["report.html"] = rep.html("allocbench figures").encode()

    paths = writable(out, list(rep.files), force)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in rep.files.items():
        write_atomic(paths[name], lambda tmp, data=data: Path(tmp).write_bytes(data))
    return list(paths.values())
