"""The exact ε-preimage of one activation: the probed model run over a whole input space."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from inversionview.exact.space import DEFAULT_SAMPLE_SIZE, input_space
from inversionview.inversion.distance import best_positions
from inversionview.inversion.invert import resolve_query
from inversionview.inversion.verify import verify_ids
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site


@dataclass
class Member:
    text: str
    distance: float
    best_position: int


@dataclass
class ExactPreimage:
    query_text: str
    position: int
    site: str
    metric: str
    epsilon: float
    space_size: int
    space: str
    """How the space was formed: all inputs, or a stated, seeded sample."""
    exhaustive: bool
    n_members: int
    members: list[Member]
    """Nearest first; at most the ``limit`` asked for."""
    seconds: float
    distances: torch.Tensor = field(repr=False)
    """(space_size,) each input's best-position distance, in space order (not in the JSON)."""

    def to_dict(self) -> dict:
        return {
            "query": {"text": self.query_text, "position": self.position, "site": self.site},
            "metric": self.metric,
            "epsilon": self.epsilon,
            "space_size": self.space_size,
            "space": self.space,
            "exhaustive": self.exhaustive,
            "n_members": self.n_members,
            "members": [m.__dict__ for m in self.members],
            "seconds": self.seconds,
        }

    def member_texts(self, texts: list[str]) -> set[str]:
        return {texts[i] for i in torch.nonzero(self.distances <= self.epsilon)[:, 0].tolist()}


def exact_preimage(
    probed: ProbedModel,
    text: str,
    position: int,
    site: str | Site,
    *,
    metric: str | None = None,
    epsilon: float | None = None,
    limit: int = 100,
    batch_size: int = 2048,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ExactPreimage:
    """Every input of the task's space (or its seeded sample) whose best position lies within ε
    (``metric`` and ``epsilon`` default to the probed model's)."""
    started = time.perf_counter()
    metric = metric or probed.default_metric
    epsilon = probed.default_epsilon if epsilon is None else epsilon
    resolved = resolve_query(probed, text, position, site, metric)
    site, position, query = resolved.site, resolved.position, resolved.activation
    space = input_space(probed.task, sample_size=sample_size, seed=seed)

    best = torch.empty(space.size)
    best_at = torch.empty(space.size, dtype=torch.long)
    for start in range(0, space.size, batch_size):
        chunk = space.ids[start : start + batch_size]
        best[start : start + len(chunk)], best_at[start : start + len(chunk)] = best_positions(
            verify_ids(probed, site, chunk, query, metric, batch_size=batch_size)
        )
        if progress:
            progress(min(start + batch_size, space.size), space.size)
    inside = torch.nonzero(best <= epsilon)[:, 0]
    order = inside[best[inside].argsort()][:limit]
    members = [Member(space.texts[i], round(float(best[i]), 5), int(best_at[i])) for i in order.tolist()]
    return ExactPreimage(
        query_text=text,
        position=position,
        site=site.name,
        metric=metric,
        epsilon=epsilon,
        space_size=space.size,
        space=space.description,
        exhaustive=space.exhaustive,
        n_members=len(inside),
        members=members,
        seconds=round(time.perf_counter() - started, 3),
        distances=best,
    )
