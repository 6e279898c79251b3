import itertools

import numpy as np
import pytest

import allocbench as ab
from allocbench.strategies.hora import allocate, hit_utility
from sim import make_env
from tests.conftest import collect_steps, fixed_env

# n = 16, base_fraction 1/2: a base group of 8, so 0, 2, 4 and 8 correct (FixedSampler is exact)
RATES = np.array([0.0, 0.25, 0.5, 1.0])


def drive(strategy, env, steps):
    """The ledger and [(groups, sampler calls, step spend)] per step."""
    log = [(ctx.sampler, (groups, calls, ctx.sampler.step)) for ctx, groups, calls in collect_steps(strategy, env, steps)]
    return log[-1][0], [entry for _, entry in log]


def total_hit(a, b, counts):
    return float(hit_utility(a, b, np.asarray(counts)).sum())


def test_hit_utility_is_the_posterior_chance_of_a_hit():
    # E[(1-p)^m] under Beta(a, b) by numerical integration, against the closed form
    p = np.linspace(0.0, 1.0, 200_001)
    for a, b, m in [(1, 1, 3), (1, 9, 5), (9, 1, 2), (3, 5, 7), (2.5, 4.0, 1)]:
        density = p ** (a - 1) * (1 - p) ** (b - 1)
        miss = np.trapezoid(density * (1 - p) ** m, p) / np.trapezoid(density, p)
        assert hit_utility(a, b, m) == pytest.approx(1 - miss, abs=1e-6)
    assert hit_utility(1, 1, np.arange(5)).tolist() == pytest.approx([0, 1 / 2, 2 / 3, 3 / 4, 4 / 5])


@pytest.mark.parametrize("successes,failures,budget,cap", [
    ([0, 2, 4, 8], [8, 6, 4, 0], 12, 7),  # base groups of 8: unsolved, 1/4, 1/2, solved
    ([0, 0, 1, 30, 5], [2, 20, 1, 2, 5], 9, 6),  # uneven evidence, as with history
    ([3, 3, 3], [3, 3, 3], 7, 7),  # equal posteriors: a near-even split
])
def test_allocation_maximises_total_hit_utility_by_brute_force(successes, failures, budget, cap):
    a, b = 1 + np.array(successes, float), 1 + np.array(failures, float)
    counts = allocate(a, b, budget, cap)
    assert counts.sum() == budget and counts.min() >= 0 and counts.max() <= cap
    table = np.array([hit_utility(a, b, np.full(len(a), m)) for m in range(cap + 1)]).T
    best = max(table[np.arange(len(a)), c].sum()
               for c in itertools.product(range(cap + 1), repeat=len(a)) if sum(c) == budget)
    assert total_hit(a, b, counts) == pytest.approx(best, rel=1e-12)
    # the caps bound what can be spent: asking for more spends every slot, no more
    assert allocate(a, b, cap * len(a) + 5, cap).tolist() == [cap] * len(a)


def test_two_rounds_spend_exactly_b_times_n_and_move_rollouts_to_unsolved_prompts():
    env = fixed_env(np.tile(RATES, 3), train_batch=4, group_size=16)  # unshuffled: 0..3, 4..7, ...
    ledger, log = drive(ab.make_strategy("hora"), env, steps=3)
    for groups, calls, spend in log:
        assert len(calls) == 2 and spend.rounds == 2  # base round, then the additional round
        base, extra = calls
        assert list(base.values()) == [8] * 4
        assert spend.rollouts == 4 * 16 and spend.pilot_rollouts == 0  # grpo's budget, all trained
        assert sum(extra.values()) == 4 * 8
        order = sorted(base)  # prompts with rates 0, .25, .5, 1 in turn
        got = [extra.get(i, 0) for i in order]
        # a solved base group: one more rollout nearly surely hits; an unsolved one keeps gaining
        assert got[0] > got[1] > got[2] > got[3] >= 1 and got[3] <= 2
        # the allocation is the hit-utility optimum for the base groups' posteriors
        s = np.array([0, 2, 4, 8.0])
        assert got == allocate(1 + s, 1 + 8 - s, 32, 64 - 8).tolist()
        # every prompt is trained, its group = base + additional rollouts, each drawn once
        assert [g.prompt_id for g in groups] == order
        assert [g.n for g in groups] == [8 + k for k in got]
        ids = np.concatenate([g.rollout_ids for g in groups])
        assert len(np.unique(ids)) == len(ids) == 64
    assert ledger.total.rollouts == 3 * 64 and ledger.total.rounds == 6


def test_one_round_history_mode_is_grpo_until_prompts_repeat():
    env = fixed_env(RATES, train_batch=4, group_size=16)  # B = the pool: every step a new epoch
    hora = ab.make_strategy("hora", base_fraction=0.0, history=True)
    _, log = drive(hora, env, steps=3)
    assert log[0][1] == [{0: 16, 1: 16, 2: 16, 3: 16}]  # no evidence: the uniform prior, an even split
    for (last, _, _), (_, calls, _) in zip(log, log[1:]):
        (call,) = calls  # one generation round
        assert sum(call.values()) == 64
        got = [call.get(i, 0) for i in range(4)]
        # the evidence is each prompt's last group (step 2: 0, 4, 8, 16 of 16 correct)
        s = np.array([g.rewards.sum() for g in last])
        f = np.array([g.n for g in last]) - s
        assert got == allocate(1 + s, 1 + f, 64, 64).tolist()
        assert got[0] > got[1] > got[2] > got[3]
    # with history, the base group and the last group add up
    s, f = hora.bind(4, 16).evidence([0, 3], {}, {3: (16.0, 0.0)})
    assert s.tolist() == [0, 16] and f.tolist() == [0, 0]


def test_runs_on_the_sim_within_grpo_budget_and_favours_prompts_without_a_hit():
    env = make_env("default", seed=0, pool_size=320, eval_size=50)
    calls, sample = [], env.sampler.sample
    env.sampler.sample = lambda requests: calls.append(out := sample(requests)) or out
    config = ab.RunConfig(steps=20, seed=0, train_batch=16, group_size=8)
    table = ab.run(env, ab.make_strategy("hora"), config)
    steps = table[table.step > 0]
    assert (steps.rounds == 2).all() and (steps.step_rollouts == 16 * 8).all()
    assert (steps.prompts_trained == 16).all() and (steps.trained_rollouts == 16 * 8).all()
    assert (steps.pilot_rollouts == 0).all()
    unsolved, solved = [], []
    for base, extra in zip(calls[::2], calls[1::2]):
        assert all(o.n == 4 for o in base)
        more = {o.prompt_id: o.n for o in extra}
        for o in base:
            hits = o.rewards.sum()
            (unsolved if hits == 0 else solved if hits == o.n else []).append(more.get(o.prompt_id, 0))
    assert unsolved and solved
    assert min(unsolved) > max(solved) and max(solved) <= 2


def test_shape_resolves_from_n():
    bound = ab.make_strategy("hora").bind(128, 16)
    assert (bound.base_n, bound.max_n) == (8, 64)
    assert ab.make_strategy("hora", base_fraction=0.25, max_n=20).resolved(128, 16)["base_n"] == 4


@pytest.mark.parametrize("bad", [dict(base_fraction=1.0), dict(base_fraction=-0.1), dict(max_n=0),
                                 dict(history="yes"), dict(base_fraction="half"), dict(max_n=2.5)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("hora", **bad)


@pytest.mark.parametrize("bad,match", [(dict(max_n=8), "max_n"), (dict(base_fraction=0.0), "history"),
                                       (dict(base_fraction=0.02), "history")])
def test_settings_that_cannot_run_this_n_are_refused_before_a_rollout(bad, match):
    env = fixed_env(RATES, train_batch=4, group_size=16)
    with pytest.raises(ab.ConfigError, match=match):
        ab.run(env, ab.make_strategy("hora", **bad), ab.RunConfig(steps=1))
    assert env.sampler.calls == []
