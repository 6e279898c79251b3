"""Simulator speed: prints CPU seconds for one 1000-step paper-scale run per strategy and the
wall time of the default 3-strategy x 5-seed comparison. Run: python benchmarks/sim_speed.py"""

import time

import allocbench as ab
from allocbench.compare import compare
from sim import make_env


def main() -> None:
    print("1000 steps on paper-1.5b-deepmath (pool 100,000; B = 128, n = 128), seed 0:")
    for name in ["grpo", "dapo", "pilot_commit"]:
        env = make_env("paper-1.5b-deepmath", seed=0)
        start = time.process_time()
        table = ab.run(env, ab.make_strategy(name), ab.RunConfig(steps=1000, eval_every=10))
        cpu = time.process_time() - start
        print(f"  {name:13s} {cpu:6.2f} s CPU  {table.cum_rollouts.iloc[-1] / 1e6:6.1f} M rollouts"
              f"  {table.cum_rollouts.iloc[-1] / cpu / 1e6:5.1f} M rollouts/s")
    strategies = [ab.make_strategy(n) for n in ["grpo", "dapo", "pilot_commit"]]
    for jobs in (1, 2):
        start = time.perf_counter()
        compare("default", strategies, list(range(5)), ab.RunConfig(steps=300), jobs=jobs, progress=False)
        print(f"default scenario, 3 strategies x 5 seeds x 300 steps, --jobs {jobs}: "
              f"{time.perf_counter() - start:.1f} s wall")


if __name__ == "__main__":
    main()
