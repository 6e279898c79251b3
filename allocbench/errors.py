"""The errors allocbench raises on purpose; the CLI prints each as one line and exits non-zero."""


class AllocbenchError(Exception):
    """Base of every error that is the user's input or the data, not a bug."""


class ConfigError(AllocbenchError, ValueError):
    """An unknown name or an out-of-range setting."""


class BudgetExhausted(AllocbenchError):
    """A sampler request would spend more rollouts than the run's budget allows."""


class DataTooHard(AllocbenchError):
    """A filtering strategy could not fill its train batch within its round limit.

    Carries the rows of the run up to the failing step in ``table`` when raised by the runner.
    """

    table = None
