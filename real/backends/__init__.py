"""Generation backends, chosen by name (``generation.backend``): see ``base``."""

from real.backends.base import (BACKENDS, Completion, GenerationBackend, SamplingParams, backend_options,
                                 make_backend, resolve_backend)

__all__ = ["BACKENDS", "Completion", "GenerationBackend", "SamplingParams", "backend_options", "make_backend",
           "resolve_backend"]
