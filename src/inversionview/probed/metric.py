"""The ε-ball's metric and radius as names and numbers, checked in one place. Torch-free, so that a
reading's settings are checked before torch loads; ``distance.py`` computes with them."""

from __future__ import annotations

import math
from typing import Literal, get_args

from inversionview.errors import UserError

Metric = Literal["euclidean", "cosine", "whitened"]
METRICS: tuple[str, ...] = get_args(Metric)
"""``whitened`` is ``euclidean`` between whitened vectors: callers whiten first (``probed/whitening.py``)."""


def check_metric(metric: str) -> None:
    """Refuse a metric that is not one of ``METRICS``."""
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; use one of: {', '.join(METRICS)}")


def check_ball(metric: str, epsilon: float) -> None:
    """Refuse a metric that is not one of ``METRICS`` and an ε that is NaN or negative (inf is
    allowed: every input inside)."""
    check_metric(metric)
    if math.isnan(epsilon) or epsilon < 0:
        raise UserError(f"`epsilon` must be a number, 0 or more, got {epsilon}")
