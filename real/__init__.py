"""The real environment (torch / vLLM GRPO loop on math). Not built yet: see the open issues."""

from allocbench.errors import ConfigError


def scenario_names() -> list[str]:
    return []


def make_env(scenario: str, seed: int = 0, **overrides):
    raise ConfigError("the real environment is not available yet; use --env sim")
