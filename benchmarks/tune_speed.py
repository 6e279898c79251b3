"""How fast `allocbench tune` runs here: a Pilot-Commit study on a sim scenario (default:
`default`, its 300 steps) in a throw-away SQLite storage.

    python benchmarks/tune_speed.py                # 12 trials x 3 seeds, one process
    python benchmarks/tune_speed.py --trials 30 --n-jobs 2

Prints the one-off reference time (grpo on the study's seeds, which sets the target), trials
per minute, and an estimate for a 100-trial x 3-seed study. Few trials overstate the cost per
trial: the pruner waits for 5 finished trials and prunes more as the study improves.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from allocbench import tune


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--n-jobs", type=int, default=1)
    args = ap.parse_args()

    config = tune.TuneConfig("pilot_commit", scenario=args.scenario, seeds=args.seeds, steps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
        t0 = time.perf_counter()
        study = tune.open_study(config, storage, "bench", sampler_seed=0)
        t_ref = time.perf_counter() - t0
        config = tune.config_of(study)
        t1 = time.perf_counter()
        if args.n_jobs == 1:
            tune.optimize(study, config, args.trials)
        else:
            tune.run_workers(config, storage, "bench", args.trials, args.n_jobs, sampler_seed=0, quiet=True)
        t_trials = time.perf_counter() - t1
        c = tune.counts(study)
    per_trial = t_trials / max(1, c["complete"] + c["pruned"])
    per_trial_3 = per_trial * 3 / args.seeds
    print(f"scenario {args.scenario}, {config.resolved_steps()} steps, {args.seeds} seeds, "
          f"{args.n_jobs} process(es)")
    print(f"reference (grpo x {args.seeds} seeds, once per study): {t_ref:.1f} s")
    print(f"{args.trials} trials: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed "
          f"in {t_trials:.1f} s = {60 / per_trial:.1f} trials/min ({per_trial:.2f} s per trial)")
    est = t_ref * 3 / args.seeds + 100 * per_trial_3
    print(f"estimate, 100 trials x 3 seeds: {est / 60:.1f} min ({60 / per_trial_3:.1f} trials/min at 3 seeds)")


if __name__ == "__main__":
    main()
