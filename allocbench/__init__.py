"""allocbench: compare rollout-allocation strategies for GRPO-style RL post-training."""

from allocbench.checkpoint import Checkpoint
from allocbench.errors import AllocbenchError, BudgetExhausted, ConfigError, DataTooHard
from allocbench.ledger import Ledger
from allocbench.protocols import Environment, Outcome
from allocbench.runner import RunConfig, run
from allocbench.strategy import (StepContext, Strategy, hyper, make_strategy, register,
                                 strategy_class, strategy_names)

__all__ = ["Checkpoint", "AllocbenchError", "BudgetExhausted", "ConfigError", "DataTooHard", "Ledger",
           "Environment", "Outcome", "RunConfig", "run", "StepContext", "Strategy", "hyper",
           "make_strategy", "register", "strategy_class", "strategy_names"]
