"""What the allocbench plug-in costs inside TRL's GRPOTrainer: step time of ``AllocGRPOTrainer``
with ``strategy="grpo"`` against plain ``GRPOTrainer`` on the same batches (the tiny-arith
model as a Hugging Face folder, B prompts x n generations, no vLLM, loss_type "dapo", beta 0),
and the plug-in's own bookkeeping measured inside its steps (strategy, ledger, rollout store,
advantages, logging: the step less generation, rewards and TRL's batch builder), whose goal is
< 5% of a step.

The same batches: a first plug-in run (not timed) records the prompts its strategy drew, and
plain GRPOTrainer reads the dataset in that order (``shuffle_dataset=False``; the plug-in
ignores TRL's order); both start from the same seed, so they generate the same completions
(checked: the per-step completion lengths TRL logs must be equal, else the script says so).
Plain and plug-in runs then alternate (the order flips every repeat); the first ``--skip`` steps
of each run pay one-off costs and are left out. Each step is timed in wall-clock seconds and in
the process's CPU seconds: on a machine other jobs share, the CPU seconds (one torch thread)
move much less with their load than the wall-clock ones do.

Run: python benchmarks/trl_overhead.py [--steps 20] [--repeats 3] [--threads 1]
"""

import argparse
import statistics
import tempfile
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per run; default: 20")
    parser.add_argument("--skip", type=int, default=2, help="first steps of each run left out; default: 2")
    parser.add_argument("--repeats", type=int, default=3, help="plain / plug-in pairs; default: 3")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads; default: 1")
    parser.add_argument("--batch", type=int, default=16, help="prompts per step B; default: 16")
    parser.add_argument("--group-size", type=int, default=8, help="generations per prompt n; default: 8")
    parser.add_argument("--max-new-tokens", type=int, default=14, help="completion length cap; default: 14")
    args = parser.parse_args()
    if args.steps <= args.skip:
        parser.error(f"--steps must be larger than --skip ({args.skip})")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    import torch
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from real import presets as P
    from real.env import load_data
    from real.trl import AllocGRPOTrainer
    from real.trl.tiny import export_tiny_arith, prompt_dataset, verifier_reward

    torch.set_num_threads(args.threads)
    folder = export_tiny_arith()
    dataset = prompt_dataset(load_data(P.get_preset("tiny-arith"))[0])
    reward = verifier_reward()

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.seconds: list[tuple[float, float]] = []  # (wall, CPU) per step

        def on_step_begin(self, *a, **k):
            self.start = (time.perf_counter(), time.process_time())

        def on_step_end(self, *a, **k):
            self.seconds.append((time.perf_counter() - self.start[0], time.process_time() - self.start[1]))

    def one_run(plugin: bool, plain_order=None):
        """Per measured step: (wall, CPU) seconds; the plug-in's bookkeeping seconds; the per-step
        mean completion lengths TRL logged; the prompts the plug-in drew, in order."""
        with tempfile.TemporaryDirectory(prefix="trl-overhead-") as tmp:
            config = GRPOConfig(
                output_dir=tmp, per_device_train_batch_size=args.batch * args.group_size,
                num_generations=args.group_size, max_completion_length=args.max_new_tokens, max_steps=args.steps,
                learning_rate=1e-4, lr_scheduler_type="constant", beta=0.0, loss_type="dapo", epsilon_high=0.28,
                gradient_checkpointing=False, use_cpu=True, logging_steps=1, report_to="none",
                save_strategy="no", disable_tqdm=True, seed=0, shuffle_dataset=False)
            common = dict(model=str(folder), reward_funcs=reward, args=config)
            if plugin:
                trainer = AllocGRPOTrainer(**common, train_dataset=dataset, strategy="grpo")
            else:
                trainer = GRPOTrainer(**common, train_dataset=dataset.select(plain_order))
            trainer.remove_callback(PrinterCallback)
            timer = StepTimes()
            trainer.add_callback(timer)
            trainer.train()
            lengths = [log["completions/mean_length"] for log in trainer.state.log_history
                       if "completions/mean_length" in log]
            steps = np.array(timer.seconds[args.skip:])
            if not plugin:
                return steps, None, lengths, None
            drawn = trainer.groups_log.table()
            return steps, trainer.table().learn_time_alloc_s.to_numpy()[1 + args.skip:], lengths, drawn.prompt_id

    print(f"tiny-arith as a Hugging Face folder, {args.batch} prompts x {args.group_size} generations, "
          f"{args.max_new_tokens} new tokens, {args.threads} thread(s), {args.steps} steps a run "
          f"(first {args.skip} left out), TRL's transformers generation")
    print("median ms per step, wall-clock (CPU); ratio: plug-in / plain; bookkeeping: share of the plug-in's "
          "wall-clock step")
    order = one_run(True)[3].to_numpy()  # the prompts the plug-in draws, in its order
    print(f"{'repeat':>6s} {'plain':>16s} {'plug-in':>16s} {'ratio wall':>10s} {'ratio CPU':>10s} {'bookkeeping %':>14s}")
    wall_ratios, cpu_ratios, shares = [], [], []
    for r in range(args.repeats):
        runs = {plugin: one_run(plugin, order) for plugin in ([False, True] if r % 2 == 0 else [True, False])}
        (plain, _, plain_lengths, _), (plug, alloc, plug_lengths, _) = runs[False], runs[True]
        if plain_lengths != plug_lengths:
            print("       (the two runs generated different completions: not the same batches)")
        p_med, q_med = np.median(plain, axis=0), np.median(plug, axis=0)
        wall_ratios.append(float(q_med[0] / p_med[0]))
        cpu_ratios.append(float(q_med[1] / p_med[1]))
        shares.append(float(alloc.sum() / plug[:, 0].sum()))
        print(f"{r + 1:6d} {1000 * p_med[0]:8.0f} ({1000 * p_med[1]:5.0f}) {1000 * q_med[0]:8.0f} ({1000 * q_med[1]:5.0f}) "
              f"{wall_ratios[-1]:10.3f} {cpu_ratios[-1]:10.3f} {100 * shares[-1]:14.2f}", flush=True)
    wall, cpu = statistics.median(wall_ratios), statistics.median(cpu_ratios)
    print(f"median over repeats: plug-in / plain step time {wall:.3f} wall-clock ({100 * (wall - 1):+.1f}%), "
          f"{cpu:.3f} CPU ({100 * (cpu - 1):+.1f}%); plug-in bookkeeping {100 * statistics.median(shares):.2f}% "
          "of its step")


if __name__ == "__main__":
    main()
