"""Named simulator scenarios. Every parameter is documented on ``Scenario``; a scenario is a
frozen set of them. The ``paper-*`` scenarios are shaped after the configurations of the
Pilot-Commit paper's results table (arXiv 2605.26606): pool size of the training set, group
size n and train batch of its scripts, and a model-size-dependent starting pass-rate
distribution and skill learning rate. They are caricatures for ranking strategies, not fits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from allocbench.errors import ConfigError


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    pool_size: int = 8_000  # training prompts
    eval_size: int = 1_000  # held-out prompts, same distribution, scored as expected pass@1
    n_skills: int = 8  # latent skill dimensions shared by all prompts
    # initial logit offsets: a mixture of normals, ((weight, mean, std), ...)
    offsets: tuple = ((0.35, -4.0, 1.5), (0.35, 0.0, 1.5), (0.30, 3.5, 1.5))
    loading_scale: float = 2.0  # a prompt's loadings sum to this (how much skill moves it)
    loading_concentration: float = 0.5  # Dirichlet alpha: small = prompts use few skills
    skill_cap: float = 2.5  # skill saturates at this per dimension (a plateau below 100%)
    lr: float = 0.15  # skill learning rate per unit of batch-mean advantage signal
    noise: float = 0.3  # update noise, relative to lr, shrinking with sqrt(groups per batch)
    len_correct: float = 600.0  # mean tokens of a correct rollout
    len_wrong: float = 1_000.0  # mean tokens of a wrong rollout (wrong answers ramble)
    len_sigma: float = 0.4  # log-normal spread of rollout lengths
    max_tokens: int = 4_096  # response length cap
    train_batch: int = 64  # B of the scenario's baseline
    group_size: int = 16  # n of the scenario's baseline
    steps: int = 300  # default training steps of a comparison


_SCENARIOS = {s.name: s for s in [
    Scenario("default", "a spread of pass rates: a third unsolved, a third mixed, a third solved"),
    Scenario("hard", "most prompts start at pass rate 0; learning must bootstrap from a few",
             offsets=((0.80, -5.0, 1.5), (0.15, -1.0, 1.0), (0.05, 2.0, 1.0)), skill_cap=3.5),
    Scenario("easy", "most prompts start near pass rate 1; a few remain informative",
             offsets=((0.05, -3.0, 1.0), (0.15, 0.5, 1.0), (0.80, 4.5, 1.5))),
    Scenario("bimodal", "prompts either solved or unsolved at the start, few in between",
             offsets=((0.5, -5.0, 1.0), (0.05, 0.0, 1.0), (0.45, 5.0, 1.0))),
    # The paper's configurations. Pool sizes are the training sets' (DeepMath-103K,
    # Polaris-53K); n and B follow its scripts (n = 128 for 1.5B, 64 for Polaris; 128 prompts
    # per step). Larger models start with more prompts solved and learn faster per step.
    # the recipe's 1.5B script differs from the defaults a compare runs with: it commits in
    # max_variance order (--set pilot_commit.commit_order=max_variance) and allows 8192 response
    # tokens (lengths here are capped at 4096, which moves token counts, not rollouts)
    Scenario("paper-1.5b-deepmath", "Qwen2.5-Math-1.5B on DeepMath-103K, n = 128",
             pool_size=100_000, offsets=((0.45, -4.0, 1.5), (0.35, -0.5, 1.5), (0.20, 3.0, 1.5)),
             lr=0.08, train_batch=128, group_size=128, steps=300),
    Scenario("paper-4b-polaris", "Qwen3-4B on Polaris-53K, n = 64",
             pool_size=53_000, offsets=((0.30, -3.5, 1.5), (0.35, 0.5, 1.5), (0.35, 3.5, 1.5)),
             lr=0.10, train_batch=128, group_size=64, steps=300),
    Scenario("paper-8b-polaris", "Qwen3-8B on Polaris-53K, n = 64",
             pool_size=53_000, offsets=((0.25, -3.5, 1.5), (0.35, 1.0, 1.5), (0.40, 4.0, 1.5)),
             lr=0.12, train_batch=128, group_size=64, steps=300),
    Scenario("paper-14b-polaris", "Qwen3-14B on Polaris-53K, n = 64",
             pool_size=53_000, offsets=((0.20, -3.5, 1.5), (0.35, 1.5, 1.5), (0.45, 4.5, 1.5)),
             lr=0.14, train_batch=128, group_size=64, steps=300),
]}


def scenario_names() -> list[str]:
    return list(_SCENARIOS)


def get_scenario(name: str, **overrides) -> Scenario:
    if name not in _SCENARIOS:
        raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(_SCENARIOS)}")
    try:
        return replace(_SCENARIOS[name], **overrides)
    except TypeError as e:
        raise ConfigError(f"bad scenario override: {e}") from None
