"""The simulator's gradient-noise and optimizer physics (module docstring of sim/env.py)."""

import numpy as np
import pandas as pd
import pytest

import allocbench as ab
from allocbench.protocols import Outcome
from sim import make_env
from sim.env import ReplayNoise, rollout_shares, skill_curve
from sim.scenarios import SATURATIONS, get_scenario, with_fields


def _groups(informative: int, collapsed: int = 0, n: int = 8) -> list[Outcome]:
    """``informative`` groups with half right (std 1/2) of prompts 0-3 in turn (so the signal's
    direction does not depend on how many), then ``collapsed`` all-wrong ones of other prompts."""
    half = np.r_[np.ones(n // 2), np.zeros(n - n // 2)]
    return ([Outcome(i % 4, half, np.ones(n)) for i in range(informative)]
            + [Outcome(100 + i, np.zeros(n), np.ones(n)) for i in range(collapsed)])


def _step_spread(groups, draws: int = 400, **overrides) -> tuple[np.ndarray, float]:
    """Mean and total variance of one SGD step (lr 1) from the same state over many draws."""
    env = make_env("default", seed=0, optimizer="sgd", lr=1.0, drift=0.0, **overrides)
    world = env.info["world"]
    start = world.params.copy()
    steps = []
    for _ in range(draws):
        world.params = start.copy()
        env.learner.update(groups)
        steps.append(world.params - start)
    steps = np.array(steps)
    return steps.mean(axis=0), float(steps.var(axis=0).sum())


def test_noise_variance_grows_with_informative_samples_and_shrinks_as_one_over_n_squared():
    env = make_env("default", seed=0)
    sigma2 = env.info["world"].noise_var
    cases = {  # (informative groups, collapsed groups) -> I / N^2
        (4, 0): 32 / 32**2, (16, 0): 128 / 128**2, (4, 12): 32 / 128**2, (16, 48): 128 / 512**2}
    for (inf, flat), expected in cases.items():
        _, variance = _step_spread(_groups(inf, flat))
        # 400 draws of 520 coordinates: the total variance's relative error is ~0.3%
        assert variance == pytest.approx(sigma2 * expected, rel=0.03), (inf, flat)


def test_collapsed_groups_bring_no_noise_and_noise_free_steps_are_exact():
    mean, variance = _step_spread(_groups(0, 10))
    assert variance == 0 and not mean.any()
    mean, variance = _step_spread(_groups(4), noise_scale=0.0)
    assert variance < 1e-20 and mean[:8].sum() > 0


def test_signal_to_noise_grows_like_the_square_root_of_informative_samples():
    snr = {}
    for inf in (4, 64):
        mean, variance = _step_spread(_groups(inf), draws=200)
        snr[inf] = float(mean @ mean) / variance
    assert snr[64] / snr[4] == pytest.approx(16, rel=0.15)  # SNR^2 grows like I


def test_adam_step_saturates_with_growing_signal_and_sgd_does_not():
    def first_step(optimizer, groups):
        env = make_env("default", seed=0, optimizer=optimizer, lr=0.01, noise_scale=0.0, drift=0.0)
        env.learner.update(groups)
        return np.abs(env.info["world"].skill)

    weak, strong = _groups(1, 15), _groups(16)  # the same prompts' direction, 16x the signal
    assert first_step("adam", strong) == pytest.approx(first_step("adam", weak), rel=1e-4)
    assert np.abs(first_step("adam", strong)).max() == pytest.approx(0.01, rel=1e-4)
    assert first_step("sgd", strong).sum() > 10 * first_step("sgd", weak).sum()


def test_adam_progress_pays_for_informative_samples_only_when_noise_dominates():
    def progress(inf, noise_scale):  # skill gained in 60 steps, mean of 8 seeds
        gained = []
        for seed in range(8):
            env = make_env("default", seed=seed, noise_scale=noise_scale, drift=0.0)
            for _ in range(60):
                env.learner.update(_groups(inf))
            gained.append(env.info["world"].skill.sum())
        return np.mean(gained)

    # noise-limited: 16x the informative samples moves the skills several times further
    # (sqrt(16) = 4 in the limit of pure noise)
    assert progress(64, 2e6) > 2.5 * progress(4, 2e6) > 0
    # saturated (no noise): the same step whatever the batch
    assert progress(64, 0.0) == pytest.approx(progress(4, 0.0), rel=1e-6)


def test_noisy_steps_displace_the_nuisance_and_lower_every_pass_rate():
    def displacement(inf, drift):
        env = make_env("default", seed=2, drift=drift)
        world = env.info["world"]
        for _ in range(150):
            env.learner.update(_groups(inf))
        return float(np.mean(world.nuisance**2)), world

    dirty, world = displacement(2, 10.0)
    clean, _ = displacement(64, 10.0)
    assert dirty > 2 * clean > 0  # cleaner batches hold the policy closer
    p = world.pass_rate(np.arange(50))
    world.params[world.sc.n_skills:] = 0
    assert (world.pass_rate(np.arange(50)) > p).all()
    free, world = displacement(2, 0.0)
    p = world.pass_rate(np.arange(50))
    world.params[world.sc.n_skills:] = 0
    assert np.array_equal(world.pass_rate(np.arange(50)), p)  # drift 0: the nuisance costs nothing


def test_reported_noise_scale_matches_the_scenario_at_the_start():
    noise_scale = 3_000.0
    trace, grad_sq = [], []
    for seed in range(6):
        env = make_env("default", seed=seed, noise_scale=noise_scale)
        table = ab.run(env, ab.make_strategy("grpo"), ab.RunConfig(steps=3, seed=seed))
        trace += table.learn_noise_trace.tolist()
        grad_sq += table.learn_noise_grad_sq.tolist()
    measured = np.nanmean(trace) / np.nanmean(grad_sq)
    assert measured == pytest.approx(noise_scale, rel=0.25)
    assert set(table.columns) >= {"learn_noise_scale", "learn_informative_samples", "learn_zero_adv_share"}


def test_checkpoint_restores_the_optimizer_state(tmp_path):
    a = make_env("default", seed=3)
    for _ in range(5):
        a.learner.update(a.sampler.sample({i: 8 for i in range(16)}))
    a.save(tmp_path)
    b = make_env("default", seed=3)
    b.load(tmp_path)
    for env in (a, b):
        env.learner.update(env.sampler.sample({i: 8 for i in range(16, 32)}))
    wa, wb = a.info["world"], b.info["world"]
    assert np.array_equal(wa.params, wb.params) and np.array_equal(wa.moment2, wb.moment2)


def test_stale_rollouts_pull_the_skills_back_towards_those_that_drew_them():
    """Noise-free SGD (lr 1), so a step is its gradient: groups drawn before one update, trained
    after it, add stale_pull x sum(w^2) (s_drawn - s) / N over their informative rollouts to the
    skills and nothing to the nuisance directions; fresh groups add nothing."""
    def step(stale_pull, fresh):
        env = make_env("default", seed=0, optimizer="sgd", lr=1.0, noise_scale=0.0, stale_pull=stale_pull)
        world = env.info["world"]
        ids = {i: 8 for i in range(40)}
        old = list(env.sampler.sample(ids))
        env.learner.update(old)  # the weights move: old's rollouts are now one version stale
        drawn, before = world.versions[0], world.params.copy()
        groups = list(env.sampler.sample(ids)) if fresh else old
        env.learner.update(groups)
        informative = sum(g.n for g in groups if 0 < g.rewards.mean() < 1)
        return world.params - before, drawn - before[:world.sc.n_skills], informative, sum(g.n for g in groups)

    moved, _, _, _ = step(0.0, fresh=False)
    pulled, back, informative, total = step(2.5, fresh=False)
    skills = len(back)
    assert 0 < informative < total and np.abs(back).max() > 0
    np.testing.assert_allclose(pulled[:skills] - moved[:skills], 2.5 * informative * back / total, atol=1e-12)
    np.testing.assert_array_equal(pulled[skills:], moved[skills:])
    np.testing.assert_array_equal(step(2.5, fresh=True)[0], step(0.0, fresh=True)[0])


def test_eval_transfer_scales_the_held_out_gain_and_leaves_training_alone():
    """The held-out prompts' skill term times eval_transfer: at 0.5 the held-out gain is about
    half (the sigmoid bends it a little), at 0 there is none (drift 0: nothing else moves them),
    and every training column is the same as at 1 (the pool, rewards, updates)."""
    base = get_scenario("default", pool_size=2_000, eval_size=500, drift=0.0)
    tables = {f: ab.run(make_env(with_fields(base, {"eval_transfer": f}, "the test"), seed=0), ab.make_strategy("grpo"),
                        ab.RunConfig(steps=30, eval_every=10, seed=0)) for f in (1.0, 0.5, 0.0)}
    gains = {f: t["eval_acc"].dropna().iloc[-1] - t["eval_acc"].dropna().iloc[0] for f, t in tables.items()}
    assert gains[1.0] > 0.05 and gains[0.0] == 0.0
    assert 0.4 < gains[0.5] / gains[1.0] < 0.6
    training = [c for c in tables[1.0].columns if not c.startswith("eval_") and c != "wall_s"]
    for f in (0.5, 0.0):
        pd.testing.assert_frame_equal(tables[f][training], tables[1.0][training])


def _replay_noise(shares: np.ndarray, dims: int, rng: np.random.Generator, window: int = 16):
    """A ReplayNoise that recorded one update: one group per rollout pair, rewards (1, 0) so each
    rollout's share is +-1 / N times its weight (the shares given, as importance weights), its
    noise sum drawn as the learner draws it. Returns it, the update's ids and shares, and Z."""
    n = len(shares)
    groups = [Outcome(k, np.array([1.0, 0.0]), np.ones(2), rollout_ids=np.array([2 * k, 2 * k + 1]),
                      weights=np.array([shares[k], shares[k]])) for k in range(n)]
    mean, std = np.full(n, 0.5), np.full(n, 0.5)
    noise = ReplayNoise(window, dims, rollout_var=float(dims))  # scale 1 per coordinate
    _, share, _ = rollout_shares(groups, mean, std, 2 * n)
    square = float(share @ share)
    z = np.sqrt(square) * rng.standard_normal(dims)
    noise.record(groups, mean, std, 2 * n, z, square)
    return noise, np.arange(2 * n), share, z


def test_a_replayed_rollouts_noise_keeps_its_distribution_and_its_part_of_the_sum():
    """Replaying some of an update's rollouts draws their directions given the update's noise
    sum Z: over many draws each coordinate still has variance 1 (its marginal), covaries with Z
    by its share, and directions drawn given Z for all of the update's rollouts sum back to Z."""
    rng = np.random.default_rng(0)
    shares = np.linspace(0.5, 2.0, 6)
    dims, draws = 40, 600
    xi, sums = [], []
    for _ in range(draws):
        noise, ids, share, z = _replay_noise(shares, dims, rng)
        xi.append(noise.directions(ids[[1, 4, 9]], rng))  # three of the twelve, one of them twice below
        sums.append(z)
        again = noise.directions(ids, rng)  # the rest, the three kept ones as they were
        np.testing.assert_array_equal(again[[1, 4, 9]], xi[-1])
        np.testing.assert_allclose(share @ again, z, atol=1e-9)
    xi, sums = np.array(xi), np.array(sums)
    # 600 draws x 40 coordinates per figure: relative errors of ~1-2%
    assert xi.var(axis=(0, 2)) == pytest.approx(np.ones(3), rel=0.06)
    covariance = (xi * sums[:, None, :]).mean(axis=(0, 2))
    assert covariance == pytest.approx(share[[1, 4, 9]], rel=0.1, abs=0.02)


def test_a_replayed_direction_is_kept_for_the_window_then_drawn_anew():
    rng = np.random.default_rng(1)
    noise, ids, _, _ = _replay_noise(np.ones(4), 8, rng, window=2)
    first = noise.directions(ids[:2], rng)
    empty = [Outcome(50, np.ones(2), np.ones(2), rollout_ids=np.array([100, 101]))]
    noise.record(empty, np.ones(1), np.zeros(1), 2, np.zeros(8), 0.0)  # update 1: nothing informative
    np.testing.assert_array_equal(noise.directions(ids[:2], rng), first)
    noise.record(empty, np.ones(1), np.zeros(1), 2, np.zeros(8), 0.0)  # update 2: the window of update 0 ends
    assert not np.isclose(noise.directions(ids[:2], rng), first).any()


def test_replaying_a_batch_repeats_its_noise_only_with_a_replay_window():
    """SGD at lr 1 with the skills far from their cap and no drift, so both steps' signals are
    the same and a step is signal plus noise: training the same rollouts again (flagged as
    reused) repeats the first step's noise exactly with a window, and draws new noise without."""
    def two_steps(window):
        env = make_env("default", seed=0, optimizer="sgd", lr=1.0, drift=0.0, skill_cap=1e6,
                       noise_scale=1e4, replay_window=window)
        world = env.info["world"]
        batch = list(env.sampler.sample({i: 8 for i in range(40)}))
        steps = []
        for groups in (batch, [Outcome(g.prompt_id, g.rewards, g.tokens, g.n, g.rollout_ids) for g in batch]):
            before = world.params.copy()
            env.learner.update(groups)
            steps.append(world.params - before)
        return steps

    first, again = two_steps(16)
    assert np.abs(first).max() > 0
    np.testing.assert_allclose(again, first, rtol=1e-6, atol=1e-9 * np.abs(first).max())
    first, again = two_steps(0)
    assert np.linalg.norm(again - first) > 0.5 * np.linalg.norm(first)


def test_a_run_that_replays_nothing_is_the_same_with_a_replay_window():
    base = get_scenario("default", pool_size=2_000, eval_size=200)
    tables = [ab.run(make_env(with_fields(base, {"replay_window": w}, "the test"), seed=0), ab.make_strategy("dapo"),
                     ab.RunConfig(steps=30, eval_every=10, seed=0)) for w in (0, 16)]
    columns = [c for c in tables[0].columns if c != "wall_s"]
    pd.testing.assert_frame_equal(tables[1][columns], tables[0][columns])


def test_checkpoint_restores_the_replayed_directions(tmp_path):
    def replay_steps(env, start):  # the last batch trained again, then a fresh one
        batch = list(env.sampler.sample({i: 8 for i in range(start, start + 16)}))
        env.learner.update(batch)
        env.learner.update([Outcome(g.prompt_id, g.rewards, g.tokens, g.n, g.rollout_ids) for g in batch])
    a = make_env("default", seed=3, replay_window=16)
    replay_steps(a, 0)
    a.save(tmp_path)
    b = make_env("default", seed=3, replay_window=16)
    b.load(tmp_path)
    for env in (a, b):
        env.learner.update([Outcome(g.prompt_id, g.rewards, g.tokens, g.n, g.rollout_ids)
                            for g in env.info["world"].replay.recent[0].groups])  # update 0's batch once more
        replay_steps(env, 16)
    np.testing.assert_array_equal(a.info["world"].params, b.info["world"].params)


@pytest.mark.parametrize("saturation", SATURATIONS)
def test_the_skill_curves_slope_is_its_derivative_and_both_start_as_the_identity(saturation):
    sc = get_scenario("default", skill_saturation=saturation, skill_cap=0.7)
    s, h = np.linspace(-6.0, 6.0, 49), 1e-6
    curve, slope = skill_curve(sc, s)
    numeric = (skill_curve(sc, s + h)[0] - skill_curve(sc, s - h)[0]) / (2 * h)
    assert np.allclose(slope, numeric, rtol=1e-6, atol=1e-8)
    small, small_slope = skill_curve(sc, np.array([1e-4]))
    assert small[0] == pytest.approx(1e-4, rel=1e-6) and small_slope[0] == pytest.approx(1.0, rel=1e-6)


def test_log_saturation_keeps_gaining_where_the_ceiling_plateaus():
    def pass_rates(saturation):  # the pool's mean pass rate after 50, 100 and 200 noise-free steps
        env = make_env("default", seed=0, noise_scale=0.0, drift=0.0, lr=0.05, skill_cap=0.5,
                       skill_saturation=saturation)
        world, ids, out = env.info["world"], np.arange(2_000), []
        for step in range(1, 201):
            env.learner.update(_groups(4))  # the same direction every step: skills grow linearly
            if step in (50, 100, 200):
                out.append(float(world.pass_rate(ids).mean()))
        return np.array(out)

    ceiling, log = pass_rates("ceiling"), pass_rates("log")
    assert abs(ceiling[2] - ceiling[1]) < 1e-3  # tanh: at the cap, nothing left to gain
    early, late = np.diff(log)  # log: each doubling of the steps gains about as much
    assert late > 0.02 and 0.5 < late / early < 1.5
