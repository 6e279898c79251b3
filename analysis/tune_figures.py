"""Tuning figures: a study's optimisation history, parameter importances and the contour of
two searched hyper-parameters, drawn by ``optuna.visualization.matplotlib``.

``draw(study, kind, contour)`` gives one matplotlib Figure; ``pngs(study, names, contour)``
gives PNG bytes by file name for the figures Optuna can draw, and a note for each it cannot.
Which pair the contour shows comes from the strategy's declaration
(``allocbench.tune.contour_params``), and the file names from ``allocbench.tune.figure_names``.
"""

from __future__ import annotations

import io
import warnings

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

KINDS = ("optimization_history", "param_importances", "contour")
NEEDS = {"optimization_history": 1, "param_importances": 3, "contour": 3}  # completed trials


def draw(study, kind: str, contour: tuple[str, str] | None = None) -> plt.Figure:
    """One figure of ``study``; ``contour`` names the two parameters of the contour kind."""
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are "experimental"
        if kind == "optimization_history":
            ax = ovm.plot_optimization_history(study)
        elif kind == "param_importances":
            ax = ovm.plot_param_importances(study)
        elif kind == "contour":
            if not contour or len(contour) != 2:
                raise ValueError("the contour needs two parameter names")
            ax = ovm.plot_contour(study, params=list(contour))
        else:
            raise ValueError(f"unknown tuning figure {kind!r}; known: {', '.join(KINDS)}")
    return (np.ravel(ax)[0] if isinstance(ax, np.ndarray) else ax).figure


def completed(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def pngs(study, names: dict[str, str], contour: tuple[str, str] | None = None,
         dpi: int = 150) -> tuple[dict[str, bytes], list[str]]:
    """PNG bytes by file name for each figure kind in ``names`` (kind -> file name), and
    notes on the figures skipped (too few completed trials, or Optuna refused)."""
    done = completed(study)
    out, notes = {}, []
    for kind, name in names.items():
        needs = NEEDS[kind]
        if done < needs:
            notes.append(f"skipped {name}: needs {needs} completed trials, the study has {done}")
            continue
        try:
            fig = draw(study, kind, contour)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
            plt.close(fig)
            out[name] = buf.getvalue()
        except Exception as e:  # Optuna refuses some studies (e.g. one value everywhere)
            notes.append(f"skipped {name}: Optuna could not draw it ({type(e).__name__}: {e})")
            plt.close("all")
    return out, notes
