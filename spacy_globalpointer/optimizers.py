"""Optimizer helpers for the component's own weights."""
from typing import Tuple

from thinc.api import Optimizer
from thinc.types import FloatsXd


class ScaledOptimizer:
    """Calls a thinc optimizer with its learning rate multiplied by ``scale``."""

    def __init__(self, optimizer: Optimizer, scale: float) -> None:
        self.optimizer = optimizer
        self.scale = scale

    def __call__(
        self, key: Tuple[int, str], weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0
    ) -> Tuple[FloatsXd, FloatsXd]:
        return self.optimizer(key, weights, gradient, lr_scale=lr_scale * self.scale)
