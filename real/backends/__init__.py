"""Generation backends, chosen by name (``generation.backend``): see ``base``."""

from real.backends.base import BACKENDS, Completion, GenerationBackend, SamplingParams, make_backend

__all__ = ["BACKENDS", "Completion", "GenerationBackend", "SamplingParams", "make_backend"]
