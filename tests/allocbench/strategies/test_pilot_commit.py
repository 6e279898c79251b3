import numpy as np
import pytest

import allocbench as ab
from tests.conftest import collect_steps, fixed_env

# n = 16 and pilot_fraction 0.25: pilot 4 + commit 12, so pilot accuracy is one of 0, .25, .5, .75, 1
RATES = np.tile([0.0, 0.25, 0.5, 0.75, 1.0], 12)


def drive(strategy, env, steps):
    """[(step, groups, sampler calls, epoch, buffer)] per step."""
    return [(ctx.step, groups, calls, ctx.candidates.epoch, dict(ctx.memory["buffer"]))
            for ctx, groups, calls in collect_steps(strategy, env, steps)]


def test_shape_follows_the_paper():
    pc = ab.make_strategy("pilot_commit")
    big, small = pc.bind(128, 128), pc.bind(128, 64)
    assert (big.pilot_n, big.commit_n, big.gen_batch_size) == (32, 96, 384)
    assert (small.pilot_n, small.commit_n, small.gen_batch_size) == (16, 48, 384)
    assert pc.pilot_n is None  # binding makes a copy; the strategy itself is unchanged
    assert pc.resolved(128, 64)["pilot_fraction"] == 0.25


def test_sorts_pilots_into_keep_too_hard_too_easy():
    env = fixed_env(RATES, train_batch=2, group_size=16)
    log = drive(ab.make_strategy("pilot_commit"), env, steps=20)
    trained = {g.prompt_id for _, groups, *_ in log for g in groups}
    assert {RATES[i] for i in trained} == {0.25, 0.5, 0.75}  # the keep band [0.125, 0.75]
    for _, groups, *_ in log:
        assert all(g.n == 16 for g in groups)  # pilot 4 + commit 12 = the baseline's n
    epochs = {e for *_, e, _ in log}
    assert len(epochs) >= 3
    requested = {e: set() for e in epochs}
    for _, _, calls, epoch, _ in log:
        for call in calls:
            requested[epoch] |= {i for i, k in call.items() if k == 4}
    first, later = min(epochs), max(epochs)
    # too easy (pilot accuracy 1.0 >= evict_threshold): gone from every later epoch;
    # too hard (0.0): deferred, piloted again in later epochs
    assert any(RATES[i] == 1.0 for i in requested[first])
    assert not any(RATES[i] == 1.0 for i in requested[later])
    assert any(RATES[i] == 0.0 for i in requested[later])


def test_eviction_threshold_is_configurable():
    env = fixed_env(RATES, train_batch=2, group_size=16)
    log = drive(ab.make_strategy("pilot_commit", evict_threshold=0.75), env, steps=20)
    late_pilots = {i for _, _, calls, epoch, _ in log if epoch >= 3 for c in calls for i, k in c.items() if k == 4}
    assert late_pilots and not any(RATES[i] >= 0.75 for i in late_pilots)


def test_never_commits_a_prompt_staler_than_its_bound():
    # many kept pilots per round, few commits: the buffer overflows and entries age
    env = fixed_env(np.full(600, 0.5), train_batch=2, group_size=16)
    pc = ab.make_strategy("pilot_commit", gen_batch_size=20, max_staleness=2)
    log = drive(pc, env, steps=12)
    piloted_at = {}
    for step, _, calls, _, _ in log:
        for call in calls:
            piloted_at.update({i: step for i, k in call.items() if k == 4})
    ages = [step - piloted_at[g.prompt_id] for step, groups, *_ in log for g in groups]
    assert max(ages) == 2 and min(ages) == 0  # aged commits happen, none beyond the bound
    for step, *_, buffer in log:
        assert all(step - added <= 2 for _, added in buffer.values())
        assert len(buffer) > 0


def test_one_round_per_step_in_steady_state():
    env = fixed_env(np.full(3000, 0.5), train_batch=4, group_size=16, shuffle=True)
    table = ab.run(env, ab.make_strategy("pilot_commit"), ab.RunConfig(steps=10))
    # step 1 pilots only, then commits from its buffer; afterwards each step is one round
    assert table.rounds.tolist()[1:] == [2] + [1] * 9
    assert (table.pilot_rollouts[1:] == table.rounds[1:] * 12 * 4).all()
    assert (table.trained_rollouts[1:] == 4 * 16).all()


def test_variance_score_commits_the_most_uncertain_first():
    rates = np.tile([0.25, 0.5, 0.75, 0.875], 300)
    env = fixed_env(rates, train_batch=2, group_size=32)  # pilot 8: accuracies exact in eighths
    log = drive(ab.make_strategy("pilot_commit", score="variance", gen_batch_size=40), env, steps=5)
    committed = [RATES_ for _, groups, *_ in log[1:] for RATES_ in (rates[g.prompt_id] for g in groups)]
    assert set(committed) == {0.5}
    log = drive(ab.make_strategy("pilot_commit", score="band"), env, steps=5)
    kept = {rates[i] for *_, buffer in log for i in buffer}
    assert 0.875 not in kept  # the band excludes p > 0.75; the variance score admits it


@pytest.mark.parametrize("bad", [dict(pilot_fraction=0.0), dict(pilot_fraction=1.0),
                                 dict(pilot_fraction=1.5), dict(lower=-0.1),
                                 dict(commit_order="best"), dict(max_staleness=-1), dict(pilot_n=0)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("pilot_commit", **bad)


def test_keep_band_bounds_are_inclusive():
    # pilot 8 (n = 32): accuracies in eighths; lower 0.125 and 1 - upper 0.75 are hit exactly
    rates = np.tile([0.0, 0.125, 0.25, 0.75, 0.875, 1.0], 20)
    env = fixed_env(rates, train_batch=2, group_size=32)
    pc = ab.make_strategy("pilot_commit", pilot_n=8, lower=0.125, upper=0.25)
    ab.run(env, pc, ab.RunConfig(steps=15))
    trained = {rates[g.prompt_id] for groups in env.learner.updates for g in groups}
    # 1 of 8 (= lower) and 6 of 8 (= 1 - upper) are kept; 7 of 8, just above, is skipped
    assert trained == {0.125, 0.25, 0.75}
    assert all(g.n == 32 for groups in env.learner.updates for g in groups)


def test_a_new_epoch_empties_the_buffer():
    # 12 prompts, 4 piloted per round, all kept (p̂ = 0.5), one commit per step: every epoch ends
    # with prompts waiting in the buffer, and none may be committed in the next epoch
    env = fixed_env(np.full(12, 0.5), train_batch=1, group_size=32)
    pc = ab.make_strategy("pilot_commit", pilot_n=8, gen_batch_size=4, max_staleness=100,
                          commit_order="max_variance")
    table = ab.run(env, pc, ab.RunConfig(steps=12))
    assert table.epoch.max() >= 3
    epoch, piloted_in, uncommitted, commits, left_at_epoch_end = 1, {}, set(), 0, 0
    for call in env.sampler.calls:
        pilots = {i for i, k in call.items() if k == 8}
        if any(piloted_in.get(i) == epoch for i in pilots):
            epoch += 1  # a prompt piloted again: the data loader began a new epoch
            left_at_epoch_end += len(uncommitted)
            uncommitted.clear()
        for i, k in call.items():
            if k == 24:  # a commit: its pilot must come from this epoch
                commits += 1
                uncommitted.discard(i)
                assert piloted_in[i] == epoch, f"prompt {i} piloted in epoch {piloted_in[i]}, committed in {epoch}"
        piloted_in.update((i, epoch) for i in pilots)
        uncommitted |= pilots
    assert epoch >= 3 and commits >= 10
    assert left_at_epoch_end > 0  # kept pilots were still waiting when their epoch ended


def test_evict_threshold_above_one_never_evicts():
    env = fixed_env(RATES, train_batch=2, group_size=16)
    log = drive(ab.make_strategy("pilot_commit", evict_threshold=float("inf")), env, steps=20)
    late_pilots = {i for _, _, calls, epoch, _ in log if epoch >= 3 for c in calls for i, k in c.items() if k == 4}
    assert any(RATES[i] == 1.0 for i in late_pilots)  # solved prompts are piloted again every epoch
