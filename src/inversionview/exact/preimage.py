"""The exact ε-preimage of one activation: the probed model run over a whole input space."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from inversionview.errors import UserError, duration
from inversionview.exact.space import DEFAULT_SAMPLE_SIZE, InputSpace, input_space
from inversionview.probed.distance import EpsilonBall, best_positions, position_distances
from inversionview.probed.model import ProbedModel
from inversionview.probed.query import Position, ResolvedQuery, resolve_query
from inversionview.probed.sites import Site
from inversionview.probed.verify import activation_batches, queryable
from inversionview.probed.whitening import in_metric_space, whitening_record


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
    whitening: dict | None = None
    """With the whitened metric: the N, shrinkage and date of the covariance used."""
    input_space: InputSpace | None = field(default=None, repr=False)
    """The inputs ``distances`` are over (a seeded sample's own, not the default one's)."""

    @property
    def ball(self) -> EpsilonBall:
        return EpsilonBall(self.metric, self.epsilon)

    def to_dict(self) -> dict:
        return {
            "query": {"text": self.query_text, "position": self.position, "site": self.site},
            "metric": self.metric,
            "epsilon": self.epsilon,
            "settings": {"metric": self.metric, "epsilon": self.epsilon, "whitening": self.whitening},
            "space_size": self.space_size,
            "space": self.space,
            "exhaustive": self.exhaustive,
            "n_members": self.n_members,
            "members": [m.__dict__ for m in self.members],
            "seconds": self.seconds,
        }

    def member_texts(self, texts: list[str] | None = None) -> set[str]:
        """The members' texts, from the space the preimage was computed over (or ``texts`` in its order)."""
        texts = self.input_space.texts if texts is None else texts
        return {texts[i] for i in torch.nonzero(self.ball.contains(self.distances))[:, 0].tolist()}


def exact_preimage(probed: ProbedModel, text: str, position: Position, site: str | Site, **options) -> ExactPreimage:
    """Every input of the task's space (or its seeded sample) whose best position lies within ε of
    one query; ``options`` as for ``exact_preimages``."""
    (result,) = exact_preimages(probed, [(text, position, site)], **options)
    return result


def best_over_space(
    probed: ProbedModel,
    queries: list[ResolvedQuery],
    space: InputSpace,
    metric: str,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    max_seconds: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each input's best-position distance to each query, and that position: both (Q, space size).
    The probed model runs once per input for all the queries' sites. A pass whose first batch says
    it would take over ``max_seconds`` is refused then, with its estimate."""
    started = time.perf_counter()
    best = torch.empty(len(queries), space.size)
    best_at = torch.empty(len(queries), space.size, dtype=torch.long)
    sites = sorted({query.site for query in queries})
    eos_id = probed.task.tokenizer.eos_id
    # Each query in the metric's space once; each batch's activations once per site.
    targets = [in_metric_space(probed, query.site, query.activation, metric) for query in queries]
    for start, chunk, acts in activation_batches(probed, space.ids, sites, batch_size):
        rows = slice(start, start + len(chunk))
        valid = queryable(chunk, eos_id)
        compared = {site: in_metric_space(probed, site, acts[site], metric)[0] for site in sites}
        for i, (query, (target, compared_as)) in enumerate(zip(queries, targets)):
            distances = position_distances(target, compared[query.site], valid, compared_as)
            best[i, rows], best_at[i, rows] = best_positions(distances)
        if progress:
            progress(start + len(chunk), space.size)
        if start == 0 and max_seconds is not None:
            _check_duration((time.perf_counter() - started) * space.size / len(chunk), space.size, max_seconds)
    return best, best_at


def _check_duration(estimate: float, size: int, max_seconds: float) -> None:
    if estimate > max_seconds:
        raise UserError(
            f"the probed model over all {size:,} inputs would take about {duration(estimate)} here (timed on the first "
            "batch); sample fewer inputs (`space_sample`), or go ahead (`yes`)"
        )


def exact_preimages(
    probed: ProbedModel,
    queries: Sequence[tuple[str, int, str | Site]],
    *,
    metric: str | None = None,
    epsilon: float | None = None,
    limit: int = 100,
    batch_size: int = 2048,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_seconds: float | None = None,
) -> list[ExactPreimage]:
    """The exact preimages of many queries (input, position, site) from one pass over the space:
    the probed model runs once per input for all their sites, so twenty queries cost about what one
    does. Each result's ``seconds`` is the whole pass's.

    ``metric`` and ``epsilon`` default to the probed model's; ``progress`` is called with (inputs
    done, space size).

    Args:
        limit: Members to list, nearest first.
        sample_size: Inputs to sample when the space is too large to enumerate (200,000).
        seed: Seed of that sample.
        max_seconds: Refuse a pass estimated to take longer than this (None: no limit).
    """
    started = time.perf_counter()
    metric, epsilon = probed.distance_settings(metric, epsilon)
    resolved = [resolve_query(probed, text, position, site, metric) for text, position, site in queries]
    space = input_space(probed.task, sample_size=sample_size, seed=seed)
    best, best_at = best_over_space(probed, resolved, space, metric, batch_size, progress, max_seconds)
    seconds = round(time.perf_counter() - started, 3)
    results, ball = [], EpsilonBall(metric, epsilon)
    for (text, _, _), query, distances, at in zip(queries, resolved, best, best_at, strict=True):
        inside = torch.nonzero(ball.contains(distances))[:, 0]
        order = inside[distances[inside].argsort()][:limit]
        members = [Member(space.texts[i], round(float(distances[i]), 5), int(at[i])) for i in order.tolist()]
        results.append(
            ExactPreimage(
                query_text=text,
                position=query.position,
                site=query.site.name,
                metric=metric,
                epsilon=epsilon,
                space_size=space.size,
                space=space.description,
                exhaustive=space.exhaustive,
                n_members=len(inside),
                members=members,
                seconds=seconds,
                distances=distances,
                whitening=whitening_record(probed, query.site, metric),
                input_space=space,
            )
        )
    return results
