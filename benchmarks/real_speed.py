"""Real-environment speed on the CPU tier (tiny-arith): generation tokens/s, the step-time
breakdown (generate / score / learn / prompt features) and the share of step time spent in
allocation bookkeeping (strategy, ledger, runner, rollout store), whose goal is < 1%. The
features column is the forward passes that feature-based strategies (pcl, gps) pay for
(goal: < 10% of a step at the tiny presets).

Run: python benchmarks/real_speed.py [--steps 20] [--preset tiny-arith] [--strategies grpo,pcl,gps]
"""

import argparse
import time

import numpy as np

import allocbench as ab


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny-arith")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--strategies", default="grpo,dapo,pilot_commit")
    args = parser.parse_args()
    from real import make_env

    print(f"{args.preset}, {args.steps} steps, seed 0 (evaluation only before and after; "
          "the first and last steps are left out of the breakdown)")
    print(f"{'strategy':13s} {'step ms':>8s} {'gen %':>6s} {'score %':>7s} {'learn %':>7s} {'bookkeep %':>10s}"
          f" {'store %':>7s} {'feat %':>6s} {'gen tok/s':>10s} {'rollouts/step':>13s} {'rounds/step':>11s}")
    for name in args.strategies.split(","):
        start = time.perf_counter()
        env = make_env(args.preset, seed=0)
        built = time.perf_counter() - start
        table = ab.run(env, ab.make_strategy(name), ab.RunConfig(steps=args.steps, eval_every=10**6))
        steps = table.iloc[2:-1]  # step 1 pays one-off costs, the last one the evaluation
        wall = np.diff(table.wall_s.to_numpy())[1:-1]
        gen, score = steps.learn_time_gen_s.to_numpy(), steps.learn_time_score_s.to_numpy()
        store = steps.learn_time_store_s.to_numpy()
        learn = steps.learn_time_learn_s.to_numpy() - store
        features = steps.learn_time_features_s.fillna(0).to_numpy()
        book = wall - gen - score - learn - features
        total = wall.sum()
        print(f"{name:13s} {1000 * wall.mean():8.1f} {100 * gen.sum() / total:6.1f} {100 * score.sum() / total:7.1f}"
              f" {100 * learn.sum() / total:7.1f} {100 * book.sum() / total:10.2f} {100 * store.sum() / total:7.2f}"
              f" {100 * features.sum() / total:6.1f} {steps.learn_gen_tokens.sum() / gen.sum():10,.0f} {steps.step_rollouts.mean():13.0f}"
              f" {steps.rounds.mean():11.2f}   (env built in {built:.1f}s)")


if __name__ == "__main__":
    main()
