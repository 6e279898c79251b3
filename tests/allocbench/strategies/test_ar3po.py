import numpy as np
import pytest

import allocbench as ab
from allocbench.protocols import Environment, Outcome
from tests.conftest import ConstEvaluator, NullLearner

CORRECT_TOKENS = 111  # a correct rollout's length in the scripted sampler; wrong ones have 5


class ScriptedSampler:
    """Prompt i's rollouts are the next entries of scripts[i] (cycled); records every request."""

    def __init__(self, scripts):
        self.scripts = [np.asarray(s, dtype=float) for s in scripts]
        self.drawn = [0] * len(scripts)
        self.calls = []
        self.next_id = 0  # rollout ids: a running count

    def sample(self, requests):
        self.calls.append(dict(requests))
        out = []
        for i, k in requests.items():
            idx = (self.drawn[i] + np.arange(k)) % len(self.scripts[i])
            self.drawn[i] += k
            r = self.scripts[i][idx]
            ids = np.arange(self.next_id, self.next_id + k, dtype=np.int64)
            self.next_id += k
            out.append(Outcome(int(i), r, np.where(r > 0, CORRECT_TOKENS, 5), rollout_ids=ids))
        return out


def scripted_env(scripts, group_size=8):
    pool = np.arange(len(scripts))  # B = the pool, no shuffle: every step sees every prompt
    return Environment(name="sim", scenario="scripted", sampler=ScriptedSampler(scripts),
                       learner=NullLearner(), evaluator=ConstEvaluator(), prompt_ids=pool,
                       epoch_order=lambda rng: pool.copy(), train_batch=len(scripts),
                       group_size=group_size)


def test_stops_a_prompt_at_its_first_correct_answer_stage_by_stage():
    scripts = [[1] * 8,                  # correct at once: one stage
               [0, 0, 0, 1] + [0] * 4,   # first correct in stage 2
               [0] * 8]                  # never: stages until the group (n = 8) is filled
    env = scripted_env(scripts)
    table = ab.run(env, ab.make_strategy("ar3po", stage_n=2), ab.RunConfig(steps=1))
    assert [sorted(c) for c in env.sampler.calls] == [[0, 1, 2], [1, 2], [2], [2]]
    assert table.rounds.iloc[1] == 4 and table.step_rollouts.iloc[1] == 2 + 4 + 8
    (groups,) = env.learner.updates
    assert [g.rewards.tolist() for g in groups] == [[1, 1], [0, 0, 0, 1], [0] * 8]


def test_reuses_a_cached_correct_answer_for_an_all_wrong_group_at_no_rollout_cost():
    # prompt 0: step 1 finds a correct answer at its 2nd rollout and stops; step 2's next four
    # rollouts are all wrong. prompt 1: never correct, so nothing to reuse
    scripts = [[0, 1] + [0] * 4, [0] * 8]
    env = scripted_env(scripts, group_size=4)
    table = ab.run(env, ab.make_strategy("ar3po", stage_n=2), ab.RunConfig(steps=2))
    step1, step2 = env.learner.updates
    assert step1[0].rewards.tolist() == [0, 1] and step1[0].reused == 0
    reused = step2[0]
    assert reused.rewards.tolist() == [0, 0, 0, 0, 1] and reused.reused == 1
    assert reused.tokens[-1] == CORRECT_TOKENS  # the cached answer's length ...
    assert reused.rollout_ids[-1] == step1[0].rollout_ids[1]  # ... and the id of the rollout it was
    assert len(set(reused.rollout_ids[:-1]) & set(step1[0].rollout_ids)) == 0  # the rest are new
    assert step2[1].rewards.tolist() == [0] * 4 and step2[1].reused == 0
    row = table.iloc[2]
    assert row.step_rollouts == 4 + 4  # the ledger never saw the reused answer ...
    assert row.reused_rollouts == 1 and row.trained_rollouts == 4 + 4 + 1  # ... the table did
    assert row.zero_var_groups == 1  # only the uncached prompt is left without signal

    env = scripted_env(scripts, group_size=4)
    table = ab.run(env, ab.make_strategy("ar3po", stage_n=2, reuse=False), ab.RunConfig(steps=2))
    assert table.reused_rollouts.sum() == 0 and env.learner.updates[1][0].n == 4


def test_saves_rollouts_on_the_sim_and_reuses_once_prompts_repeat():
    from sim import make_env
    env = make_env("default", seed=0, pool_size=128)  # B = 64: a new epoch every 2 steps
    table = ab.run(env, ab.make_strategy("ar3po"), ab.RunConfig(steps=6))
    steps = table[table.step > 0]
    assert (steps.step_rollouts < 64 * 16).all() and (steps.rounds <= 4).all()
    assert steps.reused_rollouts.iloc[:2].sum() == 0  # first epoch: nothing cached yet
    assert steps.reused_rollouts.iloc[2:].sum() > 0
    assert (steps.trained_rollouts == steps.step_rollouts + steps.reused_rollouts).all()


@pytest.mark.parametrize("bad", [dict(stage_n=0), dict(max_rollouts=0), dict(reuse="yes"),
                                 dict(stage_n=2.0)])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(ab.ConfigError):
        ab.make_strategy("ar3po", **bad)


def test_a_stage_larger_than_the_cap_is_refused():
    with pytest.raises(ab.ConfigError, match="exceeds max_rollouts"):
        ab.run(scripted_env([[0]]), ab.make_strategy("ar3po", stage_n=16), ab.RunConfig(steps=1))


def test_reuse_must_be_a_boolean():
    import allocbench as ab
    import pytest

    with pytest.raises(ab.ConfigError, match="true or false"):
        ab.make_strategy("ar3po", reuse=1)
