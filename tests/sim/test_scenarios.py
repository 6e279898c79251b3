"""Scenarios as frozen, range-checked sets of fields; TOML files in and out."""

import pandas as pd
import pytest

import allocbench as ab
from cli import main
from sim import get_scenario, make_env, scenario_names
from sim.scenarios import Scenario, load_toml, to_toml


@pytest.mark.parametrize("name", scenario_names())
def test_every_built_in_scenario_round_trips_through_toml(tmp_path, name):
    path = tmp_path / "s.toml"
    path.write_text(to_toml(get_scenario(name)))
    assert load_toml(path) == get_scenario(name)


def test_a_file_changes_fields_of_its_base(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "hard"\nnoise_scale = 500\noffsets = [[1.0, -2.0, 0.5]]\n')
    sc = get_scenario(str(path), steps=7)
    assert sc.name == "mine" and sc.noise_scale == 500.0 and sc.steps == 7
    assert sc.offsets == ((1.0, -2.0, 0.5),) and sc.skill_cap == get_scenario("hard").skill_cap
    assert make_env(str(path), seed=0).scenario == "mine"


@pytest.mark.parametrize("text, message", [
    ("nose = 1.0\n", "no field nose"),
    ("lr = -0.1\n", "lr must be > 0"),
    ('optimizer = "lion"\n', "optimizer must be one of adam, sgd"),
    ("adam_beta2 = 1.0\n", "adam_beta1 and adam_beta2 must be in"),
    ('pool_size = "many"\n', "pool_size must be int"),
    ("offsets = [[0.0, 1.0, 1.0]]\n", "offsets must be"),
    ('base = "nope"\n', "base scenario 'nope' unknown"),
    ("lr = \n", "not valid TOML"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ab.ConfigError, match=message) as err:
        get_scenario(str(path))
    assert str(path) in str(err.value)


def test_out_of_range_override_and_construction_are_refused():
    with pytest.raises(ab.ConfigError, match="noise_scale must be >= 0"):
        get_scenario("default", noise_scale=-1.0)
    with pytest.raises(ab.ConfigError, match="drift must be >= 0"):
        Scenario("x", drift=-1.0)
    with pytest.raises(ab.ConfigError, match="replay_window must be an integer >= 0"):
        get_scenario("default", replay_window=-1)
    with pytest.raises(ab.ConfigError, match="replay_window must be an integer >= 0"):
        Scenario("x", replay_window=1.5)
    with pytest.raises(ab.ConfigError, match="skill_saturation must be one of ceiling, log"):
        get_scenario("default", skill_saturation="linear")


def test_scenarios_show_prints_toml_that_compare_runs(tmp_path, capsys):
    assert main(["scenarios", "--show", "bimodal"]) == 0
    path = tmp_path / "copy.toml"
    path.write_text(capsys.readouterr().out.replace('name = "bimodal"', 'name = "bimodal-copy"'))
    assert load_toml(path) == Scenario(**{**vars(get_scenario("bimodal")), "name": "bimodal-copy"})
    out = tmp_path / "cmp"
    assert main(["compare", "--scenario", str(path), "--strategies", "grpo", "--seeds", "1", "--steps", "5",
                 "--out", str(out), "--quiet"]) == 0
    assert set(pd.read_parquet(out / "runs.parquet").scenario) == {"bimodal-copy"}
    board = tmp_path / "board"
    assert main(["leaderboard", "--scenarios", f"{path},easy", "--strategies", "grpo", "--seeds", "1",
                 "--steps", "5", "--out", str(board), "--quiet"]) == 0
    assert (board / "bimodal-copy" / "runs.parquet").is_file() and (board / "easy" / "runs.parquet").is_file()
    capsys.readouterr()
    assert main(["scenarios", "--show", str(tmp_path / "missing.toml")]) == 2
    assert "scenario file not found" in capsys.readouterr().err


def test_scenarios_show_sets_and_scales_fields_into_a_file_that_loads_back(tmp_path, capsys):
    # the transfer test's scenario: a fitted one moved to another real configuration
    assert main(["scenarios", "--show", "bimodal", "--set", "train_batch=64", "--set", "name=moved",
                 "--scale", "lr=3", "--scale", "noise_scale=0.5"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# bimodal with --set train_batch=64, --set name=moved, --scale lr=3")
    path = tmp_path / "moved.toml"
    path.write_text(text)
    base = get_scenario("bimodal")
    assert load_toml(path) == Scenario(**{**vars(base), "name": "moved", "train_batch": 64,
                                          "lr": base.lr * 3, "noise_scale": base.noise_scale * 0.5})


@pytest.mark.parametrize("args, message", [
    (["--scale", "train_batch=2"], "--scale train_batch: not a float field"),
    (["--scale", "lr=0"], "the factor must be a number > 0"),
    (["--scale", "lr=fast"], "the factor must be a number > 0"),
    (["--scale", "speed=2"], "no scenario field 'speed'"),
    (["--set", "lr=0.1", "--scale", "lr=2"], "give it once"),
    (["--set", "speed=1"], "no field speed"),
    (["--set", "train_batch=0"], "train_batch must be a positive integer"),
    (["--set", "lr"], "--set expects FIELD=VALUE"),
])
def test_scenarios_show_refuses_a_bad_change_in_one_line_printing_nothing(args, message, capsys):
    assert main(["scenarios", "--show", "bimodal", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and len(err.strip().splitlines()) == 1


def test_scenarios_set_without_show_is_refused(capsys):
    assert main(["scenarios", "--set", "lr=0.1"]) == 2
    assert "give --show NAME" in capsys.readouterr().err
