"""Distances between a query activation and every position of many sampled inputs (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inversionview.probed.metric import check_ball


def position_distances(
    query: torch.Tensor, activations: torch.Tensor, valid: torch.Tensor, metric: str
) -> torch.Tensor:
    """Distance of each position's activation to the query.

    Args:
        query: (d,) one query for all inputs, or (N, d) one per input.
        activations: (N, T, d) activations of N inputs.
        valid: (N, T) bool, positions that may match (not EOS or padding).
        metric: ``"euclidean"`` for ‖q − a‖ / ‖q‖ or ``"cosine"`` for 1 − cos(q, a).

    Returns:
        (N, T) distances, ``inf`` at invalid positions.
    """
    query = query.float()
    query = query[:, None, :] if query.dim() == 2 else query  # (N, 1, d) or (d,)
    activations = activations.float()
    if metric == "euclidean":
        dist = (activations - query).norm(dim=-1) / query.norm(dim=-1).clamp_min(1e-12)
    elif metric == "cosine":
        dist = 1 - torch.nn.functional.cosine_similarity(activations, query, dim=-1, eps=1e-12)
    else:
        raise ValueError(f"metric {metric!r}: use euclidean or cosine (whiten first for whitened)")
    return dist.masked_fill(~valid, float("inf"))


def best_positions(distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each input's nearest position: (N,) distances and (N,) position indices."""
    return distances.min(dim=-1)


@dataclass(frozen=True)
class EpsilonBall:
    """The ε-ball around a query: which distances lie inside it. Every comparison of a distance with
    ε in the package goes through here, so that "inside" means one thing everywhere (≤ ε)."""

    metric: str
    epsilon: float

    def __post_init__(self) -> None:
        check_ball(self.metric, self.epsilon)

    def contains(self, distances: torch.Tensor | float) -> torch.Tensor | bool:
        """Whether each distance lies inside the ball (≤ ε)."""
        return distances <= self.epsilon

    def near_misses(self, distances: torch.Tensor, reach: float) -> torch.Tensor:
        """Distances outside the ball but within ``reach`` times ε of the query."""
        return (distances > self.epsilon) & (distances <= reach * self.epsilon)

    def record(self) -> dict:
        return {"metric": self.metric, "epsilon": self.epsilon}
