"""sim.calibrate: the starting pass-rate fit, the summaries and discrepancy, reading runs, and
parameter recovery on tables the simulator made at known parameters."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import allocbench as ab
from allocbench.errors import ConfigError
from allocbench.probe import probe
from allocbench.schema import write_groups, write_table
from sim import calibrate as cal
from sim import make_env
from sim.scenarios import get_scenario, load_toml, with_fields

# a small, quick world with a clear accuracy gain: 60 steps of 16 prompts x 8 rollouts
SMALL = dict(pool_size=3_000, eval_size=500, train_batch=16, group_size=8, steps=60)


def make_runs(folder: Path, seeds: int = 3, first_seed: int = 100, probe_k: int | None = None,
              strategies=("grpo",), **fields) -> "cal.Scenario":
    """Simulator runs (runs.parquet, groups.parquet; probe/probe.parquet with ``probe_k``) at
    the scenario ``default`` with ``SMALL`` and ``fields``, on seeds the calibration does not use."""
    sc = with_fields(get_scenario("default"), {**SMALL, **fields}, "the test runs")
    runs, groups = cal.simulate(sc, {s: {} for s in strategies}, seeds, sc.steps, 10, first_seed=first_seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_table(runs, folder / "runs.parquet")
    write_groups(groups, folder / "groups.parquet", runs)
    if probe_k is not None:
        (folder / "probe").mkdir()
        table = probe(make_env(sc, seed=first_seed), probe_k, batch_prompts=sc.pool_size)
        table.to_parquet(folder / "probe" / "probe.parquet", index=False)
    return sc


# ------------------------------------------------------------------------- starting pass rates
@pytest.mark.parametrize("name", ["default", "hard", "easy", "bimodal"])
def test_offsets_fit_recovers_the_mean_pass_rate_from_eight_rollout_counts(name):
    sc = get_scenario(name)
    rng = np.random.default_rng(0)
    w, mu, sd = (np.array(c) for c in zip(*sc.offsets))
    comp = rng.choice(len(w), size=400, p=w / w.sum())
    p = 1 / (1 + np.exp(-rng.normal(mu[comp], sd[comp])))
    correct = rng.binomial(8, p)
    fit = cal.fit_offsets(correct, np.full(400, 8))
    assert abs(fit.mean_pass_rate - cal.mean_pass_rate(sc.offsets)) < 0.05
    assert len(fit.offsets) == cal.COMPONENTS and all(c[0] > 0 for c in fit.offsets)
    assert abs(sum(c[0] for c in fit.offsets) - 1) < 0.01
    # the share of groups with no success and with all successes, as the counts say
    pool = np.random.default_rng(1)
    fitted = get_scenario(name, offsets=fit.offsets)
    fw, fmu, fsd = (np.array(c) for c in zip(*fitted.offsets))
    fc = pool.choice(len(fw), size=20_000, p=fw / fw.sum())
    sim = pool.binomial(8, 1 / (1 + np.exp(-pool.normal(fmu[fc], fsd[fc]))))
    for k in (0, 8):
        assert abs((sim == k).mean() - (correct == k).mean()) < 0.06


def test_offsets_fit_beats_a_wrong_mixture_and_mean_pass_rate_integrates():
    assert cal.mean_pass_rate(((1.0, 0.0, 0.0),)) == pytest.approx(0.5, abs=1e-6)
    assert cal.mean_pass_rate(((0.5, -30.0, 1.0), (0.5, 30.0, 1.0))) == pytest.approx(0.5, abs=1e-3)
    rng = np.random.default_rng(3)
    correct = rng.binomial(8, 0.8, size=300)
    fit = cal.fit_offsets(correct, np.full(300, 8))
    assert fit.mean_pass_rate == pytest.approx(0.8, abs=0.03)
    with pytest.raises(ConfigError):
        cal.fit_offsets([], [])


# ------------------------------------------------------------------------- summaries, discrepancy
@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib") / "runs"
    sc = make_runs(folder, lr=0.006, noise_scale=500.0, probe_k=16)
    return folder, sc


def test_summaries_and_a_table_against_itself(small_runs):
    folder, sc = small_runs
    runs, groups = cal.read_runs(folder, ("grpo",), allow_sim=True)
    edges = cal.hist_edges(groups)
    assert len(edges) == 10  # one bin per value of correct of 8
    s = cal.summarise(runs, groups, sc.steps, edges)
    assert s.seeds == 3 and s.acc["step"].tolist() == list(range(0, 61, 10))
    assert s.acc.loc[s.acc["step"] == 0, "gain"].eq(0).all()
    assert s.zero_var["window"].nunique() == 20
    shares = s.pass_hist.groupby("third")["share"].sum()
    assert np.allclose(shares, 1.0) and len(shares) == 3
    assert len(s.b_simple) == 1 and s.b_simple["b_simple"].iloc[0] > 0
    same = cal.discrepancy(s, s)
    assert all(same[p] == 0 for p in cal.SUMMARIES) and same["total"] == 0
    # a shifted curve scores worse, in units of the seed noise
    worse = dataclasses.replace(s, acc=s.acc.assign(gain=s.acc["gain"] + 0.05))
    assert cal.discrepancy(s, worse)["acc"] > 2
    # the seed spread: one row per evaluation after step 0, compared only when asked
    assert s.spread["step"].tolist() == list(range(10, 61, 10)) and (s.spread["std"] > 0).all()
    assert np.allclose(s.spread["se"], 1 / np.sqrt(2 * 2))  # 3 seeds
    assert "spread" not in same
    wider = dataclasses.replace(s, spread=s.spread.assign(log_std=s.spread["log_std"] + math.log(2)))
    both = cal.discrepancy(s, wider, parts=cal.SUMMARIES + ("spread",))
    # twice the spread at every point: log 2 over (0.5 x sqrt(1 + 3 / 3))
    assert both["spread"] == pytest.approx(math.log(2) / (0.5 * math.sqrt(2)))
    assert both["acc"] == 0 and both["total"] == pytest.approx(both["spread"] / 5)


def test_prepare_fixes_the_runs_shape_and_measures_the_noise_scale(small_runs):
    folder, sc = small_runs
    setup = cal.prepare(folder, allow_sim=True, pool_size=3_000)
    assert (setup.base.train_batch, setup.base.group_size, setup.base.steps) == (16, 8, 60)
    assert setup.eval_every == 10 and setup.steps == 60 and setup.base.pool_size == 3_000
    assert setup.b_simple == pytest.approx(500, rel=0.3)  # the simulator's estimator, as the real one's
    assert setup.first_params()["noise_scale"] == pytest.approx(setup.b_simple)
    assert "groups of the first" in setup.offsets.source
    assert abs(setup.offsets.mean_pass_rate - cal.mean_pass_rate(sc.offsets)) < 0.05
    with_probe = cal.prepare(folder, allow_sim=True, probe=cal.read_probe(folder / "probe"))
    assert "probe of 3,000 prompts" in with_probe.offsets.source
    assert abs(with_probe.offsets.mean_pass_rate - cal.mean_pass_rate(sc.offsets)) < 0.03


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "runs folder not found"),
    (lambda d: d.mkdir(), "has no runs.parquet"),
    (lambda d: (d.mkdir(), (d / "runs.parquet").write_bytes(b"x")), "has no groups.parquet"),
    (lambda d: (d.mkdir(), (d / "runs.parquet").write_bytes(b"x"), (d / "groups.parquet").write_bytes(b"x")),
     "cannot read"),
])
def test_read_runs_refuses_folders_without_the_tables(tmp_path, make, message):
    folder = tmp_path / "runs"
    make(folder)
    with pytest.raises(ConfigError, match=message):
        cal.read_runs(folder, ("grpo",))


def test_read_runs_needs_real_runs_and_the_fitting_strategies(small_runs):
    folder, _ = small_runs
    with pytest.raises(ConfigError, match="not real; pass --allow-sim"):
        cal.read_runs(folder, ("grpo",))
    with pytest.raises(ConfigError, match="no rows of pilot_commit"):
        cal.read_runs(folder, ("grpo", "pilot_commit"), allow_sim=True)
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        cal.check_inputs(("nope",), 3, None, "default")
    with pytest.raises(ConfigError, match="--params: unknown eval_size"):
        cal.check_inputs(("grpo",), 3, ("lr", "eval_size"), "default")


def test_strategy_settings_rebuild_the_real_runs_hyper_parameters():
    runs = pd.DataFrame({"strategy": ["pilot_commit"], "hp_pilot_fraction": [0.3], "hp_pilot_n": [2.0],
                         "hp_commit_order": ["max_variance"], "hp_commit_n": [6.0], "hp_gen_batch_size": [np.nan]})
    got = cal.strategy_settings(runs, "pilot_commit")
    assert got["pilot_fraction"] == 0.3 and got["pilot_n"] == 2 and isinstance(got["pilot_n"], int)
    assert got["commit_order"] == "max_variance" and "commit_n" not in got and "gen_batch_size" not in got


# ------------------------------------------------------------------------- parameter recovery
def recover(folder: Path, tmp_path: Path, trials: int, params=("lr", "noise_scale"), seeds: int = 2) -> dict:
    setup = cal.prepare(folder, allow_sim=True, seeds=seeds, pool_size=SMALL["pool_size"], params=params,
                        probe=cal.read_probe(folder / "probe"))
    study = cal.open_study(setup, f"sqlite:///{tmp_path / 'study.db'}", "recover", sampler_seed=0)
    cal.optimize(study, setup, trials)
    return cal.best_params(study)[1]


def test_parameter_recovery_lr_and_noise_scale(small_runs, tmp_path):
    """Runs made at lr 0.006 and noise_scale 500 (3 seeds the study does not use): 50 trials over
    lr (1e-4..1, log) and noise_scale (10..1e6, log) find lr within a factor of 2 and
    noise_scale within 1.5 (the b_simple part pins it; without it only a combination of the
    two is identified). The first trial (the base's lr 0.02) is 3.3x off; a random point of the
    space lands within both factors with odds ~1 in 100, so a fit that ignores the data fails."""
    folder, sc = small_runs
    assert get_scenario("default").lr / sc.lr > 3
    best = recover(folder, tmp_path, trials=50)
    assert 1 / 2 < best["lr"] / sc.lr < 2, best
    assert 1 / 1.5 < best["noise_scale"] / sc.noise_scale < 1.5, best


@pytest.mark.parametrize("truth", [0.0, 1.5])
def test_loading_spread_is_told_apart(tmp_path, truth):
    """Runs made with every prompt equally learnable (loading_spread 0) and with a wide spread
    (1.5: a quarter of the prompts move less than an eighth as much as the mean), 120 steps of
    the SMALL shape at lr 0.006 and noise_scale 500; a 12-trial study of loading_spread alone
    (0..2.5, the rest at the truth) puts it on the right side of 0.75 (20 of 20 data seeds when
    this was written; with 60-step runs, 15 of 16, spreads 0 and 1 looking alike). In runs this
    short the spread shows mostly in the accuracy gain and the measured noise scale (the
    zero-variance share and the pass-rate histograms hardly move), so with lr searched too it
    is partly confounded with the lr: 30 trials over both got the side right in 6 of 6 studies
    of these 120-step runs but missed it in 2 of 6 of 60-step runs, at 2.5x the time; the lr is
    fixed here to keep the test fast and sure."""
    kw = dict(lr=0.006, noise_scale=500.0)
    folder = tmp_path / "runs"
    make_runs(folder, seeds=3, probe_k=16, steps=120, loading_spread=truth, **kw)
    setup = cal.prepare(folder, allow_sim=True, seeds=2, pool_size=SMALL["pool_size"], params=("loading_spread",),
                        base=get_scenario("default", **kw), probe=cal.read_probe(folder / "probe"))
    study = cal.open_study(setup, f"sqlite:///{tmp_path / 'study.db'}", "spread", sampler_seed=0)
    cal.optimize(study, setup, 12)
    got = cal.best_params(study)[1]["loading_spread"]
    assert (got < 0.75) if truth < 0.75 else (got > 0.75), got
    assert cal.SPACE["loading_spread"][:3] == (0.0, 2.5, False)  # the range the docstring assumes


@pytest.mark.slow
def test_parameter_recovery_all(tmp_path):
    """Every searched parameter (offset_std and loading_spread too), from 3 seeds of 150-step
    runs at a point away from the defaults (~2.5 minutes). lr, noise_scale and skill_cap come
    back within the stated factors; drift, loading_concentration and loading_spread (0 here) are
    only loosely pinned by runs like these, so they are not asserted."""
    truth = dict(lr=0.05, noise_scale=5_000.0, drift=4.0, skill_cap=1.5, loading_concentration=0.2)
    folder = tmp_path / "runs"
    make_runs(folder, probe_k=16, steps=150, **truth)
    best = recover(folder, tmp_path, trials=200, params=cal.DEFAULT_PARAMS, seeds=3)
    assert 1 / 1.5 < best["lr"] / truth["lr"] < 1.5, best
    assert 1 / 2.5 < best["noise_scale"] / truth["noise_scale"] < 2.5, best
    assert 1 / 2 < best["skill_cap"] / truth["skill_cap"] < 2, best


def test_stale_pull_recovered_from_lagged_grpo_runs_on_a_fitted_base(tmp_path):
    """grpo with lag 2 (every rollout trained two updates after it was drawn) at stale_pull 3 on
    3 seeds the study does not use; a 20-trial study of stale_pull alone (0..10) over the same
    scenario at stale_pull 0, its starting pass rates kept (--start base), finds it within 1. At
    stale_pull 0, 1.5, 3 and 6 such runs end at held-out accuracy 0.595, 0.568, 0.539 and 0.504."""
    truth = get_scenario("default", **SMALL, stale_pull=3.0)
    runs, groups = cal.simulate(truth, {"grpo": {"lag": 2}}, 3, truth.steps, 10, first_seed=100)
    write_table(runs, tmp_path / "runs.parquet")
    write_groups(groups, tmp_path / "groups.parquet", runs)
    base = get_scenario(truth, stale_pull=0.0)
    setup = cal.prepare(tmp_path, allow_sim=True, seeds=2, start="base", base=base, params=("stale_pull",))
    assert setup.strategies == {"grpo": {"lag": 2}} and setup.base.offsets == truth.offsets
    study = cal.open_study(setup, f"sqlite:///{tmp_path / 'study.db'}", "stale", sampler_seed=0)
    cal.optimize(study, setup, 20)
    best = cal.best_params(study)[1]
    assert abs(best["stale_pull"] - 3.0) < 1.0, best
    sc = cal.fitted(setup, best, "lagged")
    assert sc.lr == truth.lr and sc.description.startswith(base.description)
    with pytest.raises(ConfigError, match="offset_std"):
        cal.prepare(tmp_path, allow_sim=True, start="base", base=base, params=("stale_pull", "offset_std"))


def test_a_study_stored_before_a_scenario_field_existed_resumes_at_its_default(small_runs, tmp_path):
    """A study whose stored base lacks a field (stale_pull, added later) ran at that field's
    default: it resumes; a stored value other than the setup's is still refused."""
    folder, _ = small_runs
    setup = cal.prepare(folder, allow_sim=True, seeds=1, params=("lr",))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = cal.open_study(setup, storage, "old")
    old = study.user_attrs["calibrate_settings"]
    del old["base"]["stale_pull"]
    study.set_user_attr("calibrate_settings", old)
    cal.open_study(setup, storage, "old")  # resumes
    old["base"]["stale_pull"] = 1.0
    study.set_user_attr("calibrate_settings", old)
    with pytest.raises(ConfigError, match="base differ"):
        cal.open_study(setup, storage, "old")


def test_a_copy_of_the_runs_elsewhere_resumes_the_same_study(small_runs, tmp_path):
    """The runs' folder path is not part of a study's identity (a fresh clone elsewhere resumes
    the committed study); their content is."""
    import shutil

    folder, _ = small_runs
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cal.open_study(cal.prepare(folder, allow_sim=True, seeds=1, params=("lr",)), storage, "moved")
    copy = shutil.copytree(folder, tmp_path / "elsewhere")
    cal.open_study(cal.prepare(copy, allow_sim=True, seeds=1, params=("lr",)), storage, "moved")  # resumes
    runs = pd.read_parquet(copy / "runs.parquet")
    runs.loc[runs["eval_acc"].notna() & (runs["step"] > 0), "eval_acc"] += 0.01
    write_table(runs, copy / "runs.parquet")
    with pytest.raises(ConfigError, match="data differ"):
        cal.open_study(cal.prepare(copy, allow_sim=True, seeds=1, params=("lr",)), storage, "moved")


def test_the_fitted_scenario_loads_back(small_runs, tmp_path):
    folder, _ = small_runs
    setup = cal.prepare(folder, allow_sim=True, seeds=1, params=("lr",))
    sc = cal.fitted(setup, {"lr": 0.01}, "fitted")
    text = cal.scenario_toml(sc, ["a header", "discrepancy: total 1.0"])
    path = tmp_path / "fitted.toml"
    path.write_text(text)
    assert text.startswith("# a header\n") and load_toml(path) == sc
    assert sc.lr == 0.01 and sc.offsets == setup.offsets.offsets and "fitted by allocbench calibrate" in sc.description
    assert math.isfinite(setup.evaluate({"lr": 0.01})[0]["total"])


def test_calibration_needs_no_scipy():
    # scipy is not a dependency of the base install (a fresh clone's `pip install -e .`)
    code = ("import sys; sys.modules['scipy'] = None\n"
            "from sim.calibrate import fit_offsets\n"
            "fit = fit_offsets([0, 1, 8, 4, 0], [8, 8, 8, 8, 8])\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_fit_lengths_recovers_the_length_model_from_group_sums():
    from sim.calibrate import fit_lengths

    rng = np.random.default_rng(0)
    n, sigma, means = 8, 0.3, {1: 100.0, 0: 300.0}  # correct rollouts short, wrong ones long
    rows = []
    for _ in range(3000):
        rewards = rng.random(n) < 0.4
        mean_len = np.where(rewards, means[1], means[0])
        lengths = np.rint(mean_len * np.exp(sigma * rng.standard_normal(n) - sigma**2 / 2))
        rows.append(dict(kind="main", n=n, correct=int(rewards.sum()), tokens=int(lengths.sum())))
    rows.append(dict(kind="reused", n=1, correct=1, tokens=0))  # cached answers cost no tokens: ignored
    fit = fit_lengths(pd.DataFrame(rows))
    assert fit["len_correct"] == pytest.approx(100.0, rel=0.05) and fit["len_wrong"] == pytest.approx(300.0, rel=0.03)
    assert fit["len_sigma"] == pytest.approx(sigma, abs=0.05)
    assert fit["max_tokens"] >= max(r["tokens"] / r["n"] for r in rows)


def test_feature_noise_recovered_from_a_probe_of_known_features(tmp_path):
    """The probe of a world with feature_noise 1.5 (its own seed, pool and draws) gives an R^2
    from which the fit recovers 1.5 within 0.15."""
    from allocbench.probe import feature_r2

    sc = get_scenario("default", **SMALL, feature_noise=1.5)
    table = probe(make_env(sc, seed=100), 16)
    r2 = feature_r2(table)
    base = get_scenario("default", **SMALL)  # feature_noise 1.0
    assert cal.sim_feature_r2(base, 1.0, 16, len(table)) > r2 + 0.05  # the base's features tell more
    assert cal.fit_feature_noise(base, r2, 16, len(table)) == pytest.approx(1.5, abs=0.15)
    assert cal.fit_feature_noise(base, 0.999, 16, len(table)) == 0.0
    assert cal.fit_feature_noise(base, -0.5, 16, len(table)) == cal.FEATURE_NOISE_MAX


def test_fitted_scenario_takes_feature_noise_from_the_probe(small_runs):
    folder, sc = small_runs
    without = cal.prepare(folder, allow_sim=True, pool_size=3_000)
    assert without.features is None
    assert cal.fitted(without, without.first_params(), "x").feature_noise == without.base.feature_noise
    setup = cal.prepare(folder, allow_sim=True, pool_size=3_000, probe=cal.read_probe(folder / "probe"))
    r2, k, prompts = setup.features
    assert (k, prompts) == (16, 3_000) and 0.3 < r2 < 0.6  # the default's feature_noise 1.0
    fitted = cal.fitted(setup, setup.first_params(), "x")
    assert cal.sim_feature_r2(fitted, fitted.feature_noise, k, prompts) == pytest.approx(r2, abs=0.01)
    # the start from the groups, the probe for the features only
    groups_start = cal.prepare(folder, allow_sim=True, pool_size=3_000, probe=cal.read_probe(folder / "probe"),
                               start="groups")
    assert groups_start.features == setup.features and groups_start.counts[1].max() == 8
    assert groups_start.offsets.source == without.offsets.source and setup.counts[1].max() == 16


# ------------------------------------------------------------------------- several regimes at once
@pytest.fixture(scope="module")
def two_regimes(tmp_path_factory):
    """Runs of one world in two regimes: 16 prompts per step at lr 0.006 and 4 prompts per step
    for 100 steps at twice that lr (noise_scale 500 in both), 3 seeds each the study does not use."""
    root = tmp_path_factory.mktemp("regimes")
    make_runs(root / "wide", probe_k=16, name="wide", lr=0.006, noise_scale=500.0)
    make_runs(root / "narrow", name="narrow", lr=0.012, noise_scale=500.0, train_batch=4, steps=100)
    return root / "wide", root / "narrow"


def test_a_joint_setup_simulates_each_regime_in_its_shape_and_averages_their_parts(two_regimes):
    wide, narrow = two_regimes
    setup = cal.prepare(wide, allow_sim=True, seeds=1, pool_size=SMALL["pool_size"], params=("lr",),
                        also=((narrow, 2.0),))
    other = setup.also[0]
    assert [r.scenario for r in setup.regimes()] == ["wide", "narrow"] and setup.lr_scale == 1.0
    sc = other.scenario_for({"lr": 0.01})
    assert (sc.train_batch, sc.steps, sc.lr) == (4, 100, pytest.approx(0.02))
    assert setup.scenario_for({"lr": 0.01}).lr == 0.01 and setup.base.offsets == other.base.offsets
    parts, each = setup.evaluate_regimes({"lr": 0.006})
    assert [len(set(runs["step"])) for _, runs, _, _ in each] == [61, 101]
    for part in cal.SUMMARIES:
        assert parts[part] == pytest.approx(np.mean([own[part] for own, *_ in each]))
    assert parts["total@wide"] == each[0][0]["total"] and parts["total@narrow"] == each[1][0]["total"]
    # other simulator seeds: the same regimes, other runs and so another discrepancy
    fresh, again = setup.evaluate_regimes({"lr": 0.006}, first_seed=5)
    assert [sorted(set(runs["seed"])) for _, runs, _, _ in again] == [[5], [5]]
    assert [sorted(set(runs["seed"])) for _, runs, _, _ in each] == [[0], [0]]
    assert fresh["total"] != parts["total"]
    # the narrow runs were made at twice the wide lr: a wrong scale is seen there, and only there
    for scale in (0.5, 4.0):
        wrong = cal.prepare(wide, allow_sim=True, seeds=1, pool_size=SMALL["pool_size"], params=("lr",),
                            also=((narrow, scale),)).evaluate_regimes({"lr": 0.006})[0]
        assert wrong["total@narrow"] > parts["total@narrow"] + 1 and wrong["total@wide"] == parts["total@wide"]


def test_a_joint_study_recovers_the_lr_and_is_not_resumed_as_another(two_regimes, tmp_path):
    """A 12-trial study of lr over both regimes (1e-4..1, log) finds the wide regime's 0.006
    within a factor of 1.5; the study refuses a setup without the second regime."""
    wide, narrow = two_regimes
    setup = cal.prepare(wide, allow_sim=True, seeds=2, pool_size=SMALL["pool_size"], params=("lr",),
                        also=((narrow, 2.0),), probe=cal.read_probe(wide / "probe"))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = cal.open_study(setup, storage, "joint", sampler_seed=0)
    cal.optimize(study, setup, 12)
    best = cal.best_params(study)[1]
    assert 1 / 1.5 < best["lr"] / 0.006 < 1.5, best
    table = cal.trials_table(study, setup)
    assert {"total@wide", "total@narrow"} <= set(table.columns) and table["total@narrow"].notna().all()
    alone = cal.prepare(wide, allow_sim=True, seeds=2, pool_size=SMALL["pool_size"], params=("lr",),
                        probe=cal.read_probe(wide / "probe"))
    with pytest.raises(ConfigError, match="also"):
        cal.open_study(alone, storage, "joint")


def test_joint_setups_refuse_one_regime_twice_and_a_bad_lr_scale(two_regimes):
    wide, narrow = two_regimes
    with pytest.raises(ConfigError, match="two folders hold runs of wide: pass one folder per regime"):
        cal.prepare(wide, allow_sim=True, also=((wide, 1.0),))
    with pytest.raises(ConfigError, match="lr scale must be a positive number"):
        cal.prepare(wide, allow_sim=True, also=((narrow, 0.0),))


def test_recorded_lr_is_the_peak_after_the_warm_up_and_none_when_not_recorded():
    runs = pd.DataFrame({"step": [0, 1, 2, 3], "learn_lr": [np.nan, 1e-4, 2e-4, 2e-4]})
    assert cal.recorded_lr(runs) == 2e-4
    assert cal.recorded_lr(runs.drop(columns="learn_lr")) is None
    assert cal.recorded_lr(runs.assign(learn_lr=np.nan)) is None


def test_nuisance_dims_is_searched_only_when_asked_and_drawn_as_an_integer(small_runs, tmp_path):
    folder, _ = small_runs
    assert "nuisance_dims" not in cal.DEFAULT_PARAMS
    setup = cal.prepare(folder, allow_sim=True, seeds=1, pool_size=SMALL["pool_size"], params=("lr", "nuisance_dims"))
    study = cal.open_study(setup, f"sqlite:///{tmp_path / 'study.db'}", "dims")
    cal.optimize(study, setup, 3)
    drawn = [t.params["nuisance_dims"] for t in study.trials]
    assert all(isinstance(d, int) and 16 <= d <= 8192 for d in drawn) and len(set(drawn)) > 1
    number, best = cal.best_params(study)
    header = cal.header_lines(setup, {"total": study.best_value}, "dims", "sqlite:///x.db", number, 3, best)
    assert f"nuisance_dims = {best['nuisance_dims']};" in header[4]  # shown as the scenario holds it
    assert cal.fitted(setup, best, "dims").nuisance_dims == best["nuisance_dims"]
    # more nuisance directions, the same lr and noise: a larger cost of noise (drift * mean(u^2))
    costs = []
    for dims in (64, 4096):
        sc = setup.scenario_for({"lr": 0.006, "nuisance_dims": dims})
        env = make_env(sc, seed=0)
        ab.run(env, ab.make_strategy("grpo"), ab.RunConfig(steps=sc.steps, seed=0, eval_every=sc.steps))
        costs.append(sc.drift * float(np.mean(env.info["world"].nuisance ** 2)))
    assert costs[1] > 1.5 * costs[0] > 0


def study_with_best(params: dict, value: float):
    """An in-memory study whose one trial is ``params`` at ``value``."""
    import optuna

    study = optuna.create_study(direction="minimize")
    study.add_trial(optuna.trial.create_trial(
        params=params, value=value,
        distributions={k: optuna.distributions.FloatDistribution(1e-4, 1.0, log=True) for k in params}))
    return study


def test_restarts_are_chosen_on_fresh_simulator_seeds_not_on_their_own_best_value(small_runs):
    """Two studies: one ends at the runs' true lr (0.006) with a poor own value, the other 8x off
    with a flattering one. The choice re-measures both on seeds 1-3 (one seed per set) and keeps
    the true one; the table gives each set's total and their mean."""
    folder, sc = small_runs
    setup = cal.prepare(folder, allow_sim=True, seeds=1, pool_size=SMALL["pool_size"], params=("lr",))
    off, right = study_with_best({"lr": 0.048}, 0.1), study_with_best({"lr": sc.lr}, 50.0)
    chosen, table = cal.choose_restart(setup, [("off", 3, off), ("right", 4, right)])
    assert chosen == 1 and table["chosen"].tolist() == [False, True]
    assert table["study"].tolist() == ["off", "right"] and table["sampler_seed"].tolist() == [3, 4]
    assert table["total"].tolist() == [0.1, 50.0] and table["lr"].tolist() == [0.048, sc.lr]
    fresh = table[[f"fresh_total_{k}" for k in range(cal.RESCORE_SETS)]]
    assert np.allclose(table["fresh_total"], fresh.mean(axis=1))
    assert (fresh.iloc[0] > fresh.iloc[1]).all()  # each set alone says the same
    # the sets are seeds 1, 2 and 3 (the study's is 0): the same totals as simulated there
    assert fresh.iloc[1].tolist() == [setup.evaluate_regimes({"lr": sc.lr}, first_seed=k)[0]["total"] for k in (1, 2, 3)]
    line = cal.restarts_line(table, 1)
    assert line.startswith("kept of 2 restarts") and "seeds 1-3 (the mean of 3 sets of 1)" in line
    assert "(kept)" in line.split(";")[-1] and "(kept)" not in line.split(";")[0]


@pytest.mark.parametrize("transfer", [1.0, 0.5])
def test_pool_and_held_out_gains_tell_a_held_out_set_drawn_unlike_the_pool(tmp_path, transfer):
    """Simulated grpo runs: the held-out set gains about what the pool's groups do at
    eval_transfer 1, about half at 0.5 (the sigmoid and the seeds' noise give it +-25%)."""
    make_runs(tmp_path / "runs", eval_transfer=transfer, drift=0.0)
    pool, held_out = cal.pool_and_held_out_gains(*cal.read_runs(tmp_path / "runs", ("grpo",), allow_sim=True))
    assert pool > 0.05
    assert 0.75 * transfer < held_out / pool < 1.25 * transfer
