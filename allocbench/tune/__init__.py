"""Tuning: an Optuna study over the search space a strategy declares (``allocbench tune``).

- ``config``     TuneConfig (what a study tunes, shared by all its workers), constants, the
                 searched fields and the contour pair a strategy declares;
- ``objective``  one run scored against the target (rollouts to it, or AUC), the reference
                 (grpo) and the Optuna objective over the study's seeds, with pruning reports;
- ``storage``    Optuna RDB storages (SQLite by default, PostgreSQL for many machines);
- ``study``      create / load a study safely from many workers, run trials, re-run
                 interrupted ones, count them;
- ``outputs``    best.toml, trials.csv, robustness table, figure and output names, summary.

The figures are drawn by ``analysis.tune_figures``; the command line is ``cli.tune``.
"""

from allocbench.tune.config import (AUC_STEP_FACTOR, CAP_FACTOR, DEFAULT_DIR, GRID, OBJECTIVES, REFERENCE,
                                    TuneConfig, contour_params, fmt, searched_fields, seed_range)
from allocbench.tune.interrupts import (Interrupts, deferred_interrupts, install_interrupts, restore_interrupts,
                                        routed_interrupts)
from allocbench.tune.objective import Objective, Reference, SeedResult, SeedRun, reference, run_seed, score
from allocbench.tune.outputs import (best_toml, figure_names, output_names, outputs_owner, owns_outputs,
                                     robustness, summary, trials_table, write_outputs)
from allocbench.tune.storage import default_storage, open_storage, redact, storage_id
from allocbench.tune.study import (check_settings, check_study_name, config_of, counts, default_params,
                                   finished, log_line, open_study, optimize, reference_of,
                                   requeue_interrupted, run_workers)

__all__ = [
    "AUC_STEP_FACTOR", "CAP_FACTOR", "DEFAULT_DIR", "GRID", "OBJECTIVES", "REFERENCE", "TuneConfig",
    "contour_params", "fmt", "searched_fields", "seed_range",
    "Interrupts", "deferred_interrupts", "install_interrupts", "restore_interrupts", "routed_interrupts",
    "Objective", "Reference", "SeedResult", "SeedRun", "reference", "run_seed", "score",
    "best_toml", "figure_names", "output_names", "outputs_owner", "owns_outputs", "robustness", "summary",
    "trials_table", "write_outputs",
    "default_storage", "open_storage", "redact", "storage_id",
    "check_settings", "check_study_name", "config_of", "counts", "default_params", "finished", "log_line",
    "open_study", "optimize", "reference_of", "requeue_interrupted", "run_workers",
]
