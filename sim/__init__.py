"""Fast synthetic environment: per-prompt pass rates evolving under simulated GRPO training."""

from sim.env import make_env
from sim.scenarios import Scenario, get_scenario, scenario_names

__all__ = ["make_env", "Scenario", "get_scenario", "scenario_names"]
