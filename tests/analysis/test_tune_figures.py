"""Tuning figures from an Optuna study: history, importances, and the declared contour pair."""

import matplotlib.pyplot as plt
import pytest

optuna = pytest.importorskip("optuna")

from analysis import tune_figures as TF  # noqa: E402

NAMES = {"optimization_history": "optimization_history.png", "param_importances": "param_importances.png",
         "contour": "contour_b_c.png"}


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def study(trials: int):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    s.optimize(lambda t: (t.suggest_float("a", 0, 1) + 2 * t.suggest_float("b", 0, 1)
                          + t.suggest_int("c", 1, 8) / 8), n_trials=trials)
    return s


def test_pngs_by_file_name_and_the_contour_shows_the_given_pair():
    s = study(12)
    pngs, notes = TF.pngs(s, NAMES, ("b", "c"))
    assert notes == []
    assert set(pngs) == set(NAMES.values())
    assert all(data[:4] == b"\x89PNG" for data in pngs.values())
    ax = TF.draw(s, "contour", ("b", "c")).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("b", "c")
    with pytest.raises(ValueError, match="two parameter"):
        TF.draw(s, "contour")
    with pytest.raises(ValueError, match="unknown tuning figure"):
        TF.draw(s, "nonsense")


def test_too_few_completed_trials_are_notes_not_errors():
    pngs, notes = TF.pngs(study(2), NAMES, ("b", "c"))
    assert set(pngs) == {"optimization_history.png"}
    assert len(notes) == 2 and all("needs 3 completed trials, the study has 2" in n for n in notes)
    pngs, notes = TF.pngs(study(0), NAMES, ("b", "c"))
    assert pngs == {} and len(notes) == 3
