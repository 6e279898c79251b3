"""Does a fitted scenario move the pool it trains on as the real runs do? For grpo, real against
simulated: the mean pass rate of the trained groups from steps 1-5 to the last tenth of the run
(the pool's gain), the held-out accuracy's gain over the run, their ratio, and per third of
training the share of trained groups that solve 1 to 3 of their n rollouts and all n. The real
runs' pool gains about 1.5x their held-out set; a simulator that draws its held-out set like
its pool gains about 1x, so its trained groups' pass rates hardly move (docs/agreement.md,
results/validate/PREREGISTERED-log-evaltransfer.md). grpo at 4 simulated seeds against the real
seeds 0-3; 6-7 s for the real folder and one scenario here.

Its windows are the ones that test fixed: sim.calibrate.pool_and_held_out_gains, which calibrate
prints, measures the same two gains over whole runs (first tenth of the steps to the last, the
mean of the last three evaluations; the real ratio there is 1 / 0.78), so the two ratios differ.

Run: python benchmarks/pool_gain.py REAL_DIR SCENARIO.toml [SCENARIO.toml ...]
e.g. python benchmarks/pool_gain.py results/real/large-batch/tiny-arith-large-batch \
         results/calibrated/log/tiny-arith-large-batch-log.toml
"""

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import pandas as pd

from cli import main as allocbench

SEEDS = 4


def gains(runs: pd.DataFrame, groups: pd.DataFrame) -> dict:
    """grpo's pool and held-out gains and its trained groups' shares per third (seeds < SEEDS)."""
    runs = runs[(runs["strategy"] == "grpo") & (runs["seed"] < SEEDS)]
    groups = groups[(groups["strategy"] == "grpo") & (groups["seed"] < SEEDS) & groups["trained"].astype(bool)]
    pass_rate = (groups["correct"] / groups["n"]).groupby(groups["step"]).mean()
    last = groups["step"].max()
    pool = pass_rate[pass_rate.index > 0.9 * last].mean() - pass_rate[pass_rate.index <= 5].mean()
    acc = runs.dropna(subset=["eval_acc"]).groupby("step")["eval_acc"].mean()
    held_out = acc.iloc[-1] - acc.iloc[0]
    third = pd.cut(groups["step"], [0, last / 3, 2 * last / 3, last], labels=[1, 2, 3], include_lowest=True)
    low = groups["correct"].between(1, 3).groupby(third, observed=True).mean()
    solved = (groups["correct"] == groups["n"]).groupby(third, observed=True).mean()
    return {"pool gain": pool, "held-out gain": held_out, "ratio": pool / held_out,
            "1-3 solved, by third": " / ".join(f"{v:.2f}" for v in low),
            "all solved, by third": " / ".join(f"{v:.2f}" for v in solved)}


def simulated(scenario: Path, eval_every: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "grpo"
        with contextlib.redirect_stdout(io.StringIO()):  # compare's own table: not this script's
            code = allocbench(["compare", "--scenario", str(scenario), "--strategies", "grpo", "--seeds", str(SEEDS),
                               "--eval-every", str(eval_every), "--log-groups", "--quiet", "--out", str(out)])
        if code:
            raise SystemExit(code)
        return pd.read_parquet(out / "runs.parquet"), pd.read_parquet(out / "groups.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("real", type=Path, help="a real runs folder with runs.parquet and groups.parquet")
    ap.add_argument("scenarios", type=Path, nargs="+", help="fitted scenario TOML files")
    args = ap.parse_args()
    runs, groups = pd.read_parquet(args.real / "runs.parquet"), pd.read_parquet(args.real / "groups.parquet")
    steps = runs.loc[runs["eval_acc"].notna() & (runs["step"] > 0), "step"]
    rows = {"real": gains(runs, groups)}
    for path in args.scenarios:
        rows[path.stem] = gains(*simulated(path, int(steps.min())))
    print(pd.DataFrame(rows).T.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
