"""A feature's share among a preimage's members, with its uncertainty: pure functions on weights.

Members of a reading count by importance weights (``inclusion.py``): the inverse of each one's chance
of being drawn. A handful of rare members can carry nearly all the weight, and then the weighted
share is the opinion of those few. Three guards keep a verdict honest:

- weights are capped so that no member carries more than ``MAX_WEIGHT_SHARE`` of the total (the cap
  is a share of the total after capping, so it cannot be dominated by the weights it caps);
- the effective number of members behind the weighted share is Kish's (Σw)² / Σw²;
- the share's interval comes from a seeded bootstrap over the members.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_WEIGHT_SHARE = 0.02
"""No member carries more than this share of the total weight (with fewer than 1/0.02 = 50 members,
the cap makes them all equal)."""
BOOTSTRAP_DRAWS = 400
LEVEL = 0.9
"""The interval's coverage: the middle 90 % of the bootstrap shares."""


def capped_weights(weights: list[float], max_share: float = MAX_WEIGHT_SHARE) -> list[float]:
    """``weights`` with the largest lowered to a common cap t chosen so that t = max_share · Σ(capped
    weights): afterwards no weight exceeds ``max_share`` of the total (all are equal when there are
    too few to allow it)."""
    n = len(weights)
    if n == 0 or max(weights) <= max_share * sum(weights):
        return list(weights)
    if n * max_share <= 1:
        return [1.0] * n
    ordered = sorted(weights, reverse=True)
    rest = sum(ordered)
    for k in range(n):  # k weights capped: t = share · (k·t + rest of the weights)
        rest -= ordered[k]
        cap = max_share * rest / (1 - max_share * (k + 1))
        if k + 1 == n or ordered[k + 1] <= cap:
            return [min(w, cap) for w in weights]
    raise AssertionError("unreachable: the last k always fits")


def effective_members(weights: list[float]) -> float:
    """Kish's effective sample size (Σw)² / Σw²: how many equally weighted members the weights are
    worth."""
    square = sum(w * w for w in weights)
    return sum(weights) ** 2 / square if square > 0 else 0.0


@dataclass(frozen=True)
class ShareEstimate:
    """A feature's share among members whose value is defined: weighted, plain, and uncertainty."""

    weighted: float
    plain: float
    """The share among the distinct members, each counted once."""
    effective: float
    low: float
    high: float
    """The weighted share's interval: the middle ``LEVEL`` of its bootstrap."""
    plain_low: float
    plain_high: float
    """The plain share's interval, from the same bootstrap draws."""


def share_estimate(
    matches: list[bool], weights: list[float], seed: int = 0, max_share: float = MAX_WEIGHT_SHARE
) -> ShareEstimate | None:
    """The share of ``matches`` (one per member whose value is defined) weighted by ``weights``
    (capped here), with Kish's effective members and a seeded bootstrap interval; None without members."""
    if not matches:
        return None
    w = torch.tensor(capped_weights(weights, max_share), dtype=torch.float64)
    hit = torch.tensor(matches, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(matches), (BOOTSTRAP_DRAWS, len(matches)), generator=generator)
    shares = (w[picks] * hit[picks]).sum(1) / w[picks].sum(1)
    plain_shares = hit[picks].mean(1)
    return ShareEstimate(
        float((w * hit).sum() / w.sum()),
        float(hit.mean()),
        effective_members(w.tolist()),
        *_middle(shares),
        *_middle(plain_shares),
    )


def _middle(shares: torch.Tensor) -> tuple[float, float]:
    """The bounds of the middle ``LEVEL`` of bootstrap shares."""
    tail = (1 - LEVEL) / 2
    low, high = torch.quantile(shares, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return low, high
