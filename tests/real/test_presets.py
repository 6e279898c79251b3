import pytest

from allocbench.errors import ConfigError
from real.presets import PRESETS, get_preset, load_toml, to_toml


def test_presets_are_listed():
    import real

    assert {"tiny-arith", "smollm2-arith"} <= set(real.scenario_names())


def test_overrides_by_dotted_key_section_dict_and_run_field():
    p = get_preset("tiny-arith", **{"learner.lr": 1, "generation": {"top_p": 0.9}, "train_batch": 3})
    assert p.learner.lr == 1.0 and isinstance(p.learner.lr, float)
    assert p.generation.top_p == 0.9 and p.run.train_batch == 3
    assert PRESETS["tiny-arith"].learner.lr != 1.0  # presets are frozen; overrides copy


@pytest.mark.parametrize("overrides, message", [
    ({"learner.nope": 1}, "has no field nope"),
    ({"nosection.lr": 1}, "no section"),
    ({"lr": 1}, "SECTION.FIELD"),
    ({"learner.lr": "fast"}, "must be float"),
])
def test_bad_overrides_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_preset("tiny-arith", **overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown real preset"):
        get_preset("nope")


def test_toml_round_trip_and_base(tmp_path):
    preset = get_preset("tiny-arith", **{"learner.kl_coef": 0.01, "data.arith_levels": [1, 2]})
    path = tmp_path / "p.toml"
    path.write_text(to_toml(preset))
    assert load_toml(path) == preset
    small = tmp_path / "small.toml"
    small.write_text('base = "smollm2-arith"\nname = "mine"\n[generation]\nmax_new_tokens = 32\n')
    loaded = get_preset(str(small))
    assert loaded.name == "mine" and loaded.generation.max_new_tokens == 32
    assert loaded.model == PRESETS["smollm2-arith"].model
