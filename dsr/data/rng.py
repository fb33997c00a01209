"""Random streams for datasets used inside DataLoader workers."""
from __future__ import annotations

import os

import numpy as np
import torch

__all__ = ["ProcessRng"]


class ProcessRng:
    """A numpy Generator per (process, torch seed), or a fixed one.

    DataLoader workers are forked copies of the dataset: one generator created up front would give
    every worker the same stream. This one is re-created the first time it is used in a new
    process (or after the torch seed changes, as Lightning reseeds workers) from
    ``[torch.initial_seed(), pid, *salt]``, so the streams differ between workers and are
    reproducible for a given seed. ``fixed`` (tests) is returned as it is.
    """

    def __init__(self, fixed: np.random.Generator | None = None, salt: tuple = ()):
        self.fixed = fixed
        self.salt = tuple(salt)
        self._key = None
        self._rng = None

    def get(self) -> np.random.Generator:
        if self.fixed is not None:
            return self.fixed
        key = (os.getpid(), torch.initial_seed())
        if self._key != key:
            self._key = key
            self._rng = np.random.default_rng([torch.initial_seed() % (2 ** 63), os.getpid(), *self.salt])
        return self._rng
