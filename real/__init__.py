"""The real environment: a GRPO loop on an actual language model with a math verifier.

``make_env(preset, seed=0, **overrides)`` and ``scenario_names()`` are what the allocbench core
loads by name; torch and transformers are imported only when an environment is made.
"""

from __future__ import annotations


def scenario_names() -> list[str]:
    from real.presets import scenario_names as names

    return names()


def make_env(scenario: str = "tiny-arith", seed: int = 0, **overrides):
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        from allocbench.errors import ConfigError

        raise ConfigError(f"the real environment needs torch and transformers ({e}); "
                          "pip install -e '.[real]'") from None
    from real.env import make_env as _make_env

    return _make_env(scenario, seed=seed, **overrides)
