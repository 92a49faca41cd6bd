"""Verified refinement: spend probed-model evaluations on turning a reading's near misses into members.

A reading draws samples from the decoder and runs the probed model on each. Two things make those
evaluations count for more:

- an input drawn many times is run once (``verify_ids`` merges repeats), so the evaluations a
  reading costs are its distinct inputs;
- each distinct sample outside ε but near it (within ``NEAR_MISS`` ε) is refined: keep its first
  tokens, up to a cut drawn at random, let the decoder (still conditioned on the query) rewrite the
  rest, and run the probed model on the candidates, a round of several at once. A candidate
  inside ε ends the sample's search; else the nearest candidate replaces the sample when it is
  nearer (a local search the decoder guides). Up to ``evaluations_per_sample`` candidates a
  sample; a candidate that is an input already run (drawn, or an earlier candidate) is not run
  again and costs nothing.

The decoder's own precision is left as it was measured (the drawn samples only); what refinement
adds is counted apart (``RefinementCount``), beside the same figures without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from inversionview.decoder.model import Decoder
from inversionview.decoder.sampling import sample_ids
from inversionview.errors import UserError
from inversionview.probed.distance import EpsilonBall
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site
from inversionview.probed.verify import sequence_lengths, verify

NEAR_MISS = 2.0
"""Only samples within this many ε of the query are refined: farther ones are rarely turned into
members, and evaluations spent on them are better spent on fresh samples."""
CANDIDATES_PER_ROUND = 4
"""Candidates a near miss gets per round: enough to batch the probed model, few enough that a sample
that becomes a member early leaves most of its evaluations unspent."""


@dataclass(frozen=True)
class RefinementCount:
    """Members found for a number of probed-model evaluations."""

    members: int
    """Samples inside ε, a repeat counted each time it was drawn."""
    distinct_members: int
    evaluations: int
    """Inputs run through the probed model."""

    @property
    def members_per_1000_evaluations(self) -> float:
        return round(1000 * self.members / max(1, self.evaluations), 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "members_per_1000_evaluations": self.members_per_1000_evaluations}


@dataclass(frozen=True)
class Refined:
    """What refinement found: new member inputs (their ids), and the counts with and without it."""

    ids: torch.Tensor
    """(M, max_len): the distinct members refinement found that no drawn sample was."""
    with_refinement: RefinementCount
    without: RefinementCount

    def to_dict(self) -> dict:
        return {**self.with_refinement.to_dict(), "without_refinement": self.without.to_dict()}


def check_refine(evaluations_per_sample: int) -> None:
    if evaluations_per_sample < 0:
        raise UserError(f"refine must be 0 or more evaluations a sample, got {evaluations_per_sample}")


def _candidates(
    decoder: Decoder,
    probed: ProbedModel,
    site: Site,
    query: torch.Tensor,
    ids: torch.Tensor,
    best_at: torch.Tensor,
    rng: torch.Generator,
) -> torch.Tensor:
    """For each row of ``ids`` (n, T): the row cut at a random text position, the rest rewritten by
    the decoder given ``query`` (d,): (n, T). In a causal model the cut lies at or before the row's
    best position ``best_at`` (n,), whose activation a later cut could not change."""
    text_tokens = sequence_lengths(ids, probed.task.tokenizer.eos_id) - 2  # BOS and EOS aside
    if not probed.is_encoder:
        text_tokens = torch.minimum(text_tokens, best_at.clamp_min(1))
    keep = 1 + (torch.rand(ids.shape[0], generator=rng) * text_tokens.clamp_min(1)).long()  # BOS .. a strict prefix
    return sample_ids(
        decoder, probed, site, query.expand(ids.shape[0], -1), temperature=1.0, generator=rng, prefix=ids, keep=keep
    )


def _search(
    decoder: Decoder,
    probed: ProbedModel,
    site: Site,
    query: torch.Tensor,
    start: torch.Tensor,
    start_distance: torch.Tensor,
    start_at: torch.Tensor,
    *,
    evaluations_per_sample: int,
    known: dict[tuple, float],
    metric: str,
    epsilon: float,
    rng: torch.Generator,
) -> tuple[list[torch.Tensor], int]:
    """Local search from each row of ``start`` (n, T), nearest candidate kept: the candidates found
    inside ε, and the evaluations spent. A candidate in ``known`` (inputs already run, with their
    distances) is not run again and costs nothing; those run are added to it."""
    current, distance, best_at = start.clone(), start_distance.clone(), start_at.clone()
    searching = torch.ones(len(start), dtype=torch.bool)
    found, spent, budget = [], 0, evaluations_per_sample
    while budget > 0 and searching.any():
        per_row = min(CANDIDATES_PER_ROUND, budget)
        rows = searching.nonzero()[:, 0].repeat_interleave(per_row)
        candidates = _candidates(decoder, probed, site, query, current[rows], best_at[rows], rng)
        # An input already run is skipped, even one nearer than the row's current input: ``known``
        # holds its distance but not its best position, which the next round's cut needs.
        fresh = _unknown_rows(candidates, known)
        budget -= per_row
        if not len(fresh):
            continue
        rows, candidates = rows[fresh], candidates[fresh]
        verified = verify(probed, site, candidates, query, EpsilonBall(metric, epsilon))
        best, at, inside = verified.best, verified.best_at, verified.inside
        known.update(zip(map(tuple, candidates.tolist()), best.tolist()))
        spent += len(rows)
        found.append(candidates[inside])
        searching[rows[inside]] = False
        for row in rows.unique().tolist():  # the nearest candidate of each row, where it is nearer
            mine = (rows == row).nonzero()[:, 0]
            nearest = mine[best[mine].argmin()]
            if best[nearest] < distance[row]:
                current[row], distance[row], best_at[row] = candidates[nearest], best[nearest], at[nearest]
    return found, spent


def _unknown_rows(candidates: torch.Tensor, known: dict[tuple, float]) -> torch.Tensor:
    """The index of the first occurrence of each row of ``candidates`` that is not in ``known``."""
    first: dict[tuple, int] = {}
    for index, row in enumerate(map(tuple, candidates.tolist())):
        if row not in known:
            first.setdefault(row, index)
    return torch.tensor(list(first.values()), dtype=torch.long)


def _count(ids: torch.Tensor, inside: torch.Tensor, evaluations: int) -> RefinementCount:
    distinct = len({tuple(row) for row in ids[inside].tolist()})
    return RefinementCount(members=int(inside.sum()), distinct_members=distinct, evaluations=evaluations)


def refine(
    decoder: Decoder,
    probed: ProbedModel,
    site: Site,
    query: torch.Tensor,
    ids: torch.Tensor,
    best: torch.Tensor,
    best_at: torch.Tensor,
    *,
    evaluations_per_sample: int,
    metric: str,
    epsilon: float,
    seed: int = 0,
    known: dict[tuple, float] | None = None,
) -> Refined:
    """Refine the drawn samples ``ids`` (N, T), at best-position distances ``best`` (N,), found at
    positions ``best_at`` (N,), from the query activation ``query`` (d,) at ``site``: each distinct
    sample outside ε gets up to ``evaluations_per_sample`` candidates, rewritten by the decoder.
    A candidate that is one of ``ids``, or in ``known`` (inputs already run, as tuples of ids, with
    their distances), is not run again and costs nothing; ``known`` is the caller's own dict, and
    gains the rows of ``ids`` and every candidate refinement runs."""
    check_refine(evaluations_per_sample)
    known = {} if known is None else known
    for row, distance in zip(map(tuple, ids.tolist()), best.tolist(), strict=True):
        known.setdefault(row, distance)
    ball = EpsilonBall(metric, epsilon)
    inside = ball.contains(best)
    without = _count(ids, inside, evaluations=len(ids))
    distinct, first = _first_rows(ids)
    misses = first[ball.near_misses(best[first], NEAR_MISS)]
    rng = torch.Generator().manual_seed(seed)
    found, spent = [], 0
    if evaluations_per_sample and len(misses):
        options = {"evaluations_per_sample": evaluations_per_sample, "metric": metric, "epsilon": epsilon, "rng": rng}
        options["known"] = known
        found, spent = _search(decoder, probed, site, query, ids[misses], best[misses], best_at[misses], **options)
    new = _new_members(torch.cat([ids[:0], *found]), ids[inside])
    members = int(inside.sum()) + len(new)
    with_refinement = RefinementCount(members, without.distinct_members + len(new), distinct + spent)
    return Refined(new, with_refinement, without)


def _first_rows(ids: torch.Tensor) -> tuple[int, torch.Tensor]:
    """How many distinct rows ``ids`` has, and the index of each one's first occurrence."""
    first = _unknown_rows(ids, {})
    return len(first), first


def _new_members(found: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """The distinct rows of ``found`` that are not rows of ``members``."""
    known = {tuple(row) for row in members.tolist()}
    new = {}
    for row in found.tolist():
        if tuple(row) not in known:
            new.setdefault(tuple(row), row)
    return torch.tensor(list(new.values()), dtype=torch.long).view(-1, found.shape[1])
