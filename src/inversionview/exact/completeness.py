"""How complete and how precise a decoder is, measured against the exact ε-preimage."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch

from inversionview.decoder.build import decoder_sites
from inversionview.decoder.draws import Progress, draw_samples
from inversionview.decoder.model import Decoder
from inversionview.decoder.refine import NEAR_MISS, RefinementCount, refine
from inversionview.decoder.schedule import Schedule, parse_schedule
from inversionview.exact.preimage import ExactPreimage, exact_preimage
from inversionview.probed.distance import EpsilonBall
from inversionview.probed.model import ProbedModel
from inversionview.probed.query import Position, ResolvedQuery, resolve_query
from inversionview.probed.verify import verify


@dataclass
class Completeness:
    n_members: int
    space_size: int
    space: str
    samples: int
    precision: float
    """Share of decoder samples whose best position is inside ε."""
    recall: dict[str, float]
    """Share of the distinct true members found within the first k samples, keyed by k."""
    seconds: dict[str, float]
    schedule: str
    exact: ExactPreimage = field(repr=False)
    sample_texts: list[str] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        return {
            "n_members": self.n_members,
            "space_size": self.space_size,
            "space": self.space,
            "samples": self.samples,
            "precision": self.precision,
            "recall": self.recall,
            "seconds": self.seconds,
            "schedule": self.schedule,
        }


def spread_queries(probed: ProbedModel, n: int, seed: int) -> list[tuple[str, int, str]]:
    """``n`` seeded held-out (text, position, site) queries: sites in turn, each at one of the task's
    query positions drawn at random, so that every site and position appears."""
    rng = random.Random(seed)
    sites = decoder_sites(probed)
    queries = []
    for i, text in enumerate(probed.task.sample_texts(rng, n, split="heldout")):
        positions = probed.task.query_positions(text)
        queries.append((text, positions[rng.randrange(len(positions))], sites[i % len(sites)].name))
    return queries


def recall_checkpoints(samples: int) -> list[int]:
    """100, 1,000, 10,000 … below ``samples``, and ``samples`` itself."""
    points, k = [], 100
    while k < samples:
        points.append(k)
        k *= 10
    return [*points, samples]


def ordered_samples(
    decoder: Decoder,
    probed: ProbedModel,
    query: ResolvedQuery,
    samples: int,
    schedule: Schedule,
    generator: torch.Generator,
    *,
    ball: EpsilonBall,
    batch_size: int,
    progress: Progress | None,
) -> tuple[list[str], torch.Tensor]:
    """The texts of ``samples`` decoder samples in the order they count for recall@k, and whether
    each lies inside the ε-``ball`` (N,)."""
    chunks, inside = [], []
    draws = draw_samples(decoder, probed, query, samples, schedule, generator, batch_size=batch_size, progress=progress)
    for ids, _, _ in draws:
        chunks.append(ids)
        inside.append(verify(probed, query.site, ids, query.activation, ball).inside)
    drawn = sum(len(ids) for ids in chunks)  # fewer than asked only if distinct sampling ran out of inputs
    # Interleave the schedule's pairs, as if each sample had drawn its pair at random; distinct
    # samples keep the order they were drawn in, so that the first k are a sample of k.
    order = torch.arange(drawn) if schedule.distinct else torch.randperm(drawn, generator=generator)
    tokenizer = probed.task.tokenizer
    texts = [tokenizer.decode(row) for row in torch.cat(chunks)[order].tolist()]
    return texts, torch.cat(inside)[order]


def recall_at(texts_in_order: list[str], members: set[str]) -> dict[str, float]:
    """Share of the distinct ``members`` found within the first k samples, keyed by k."""
    recall, found, done = {}, set(), 0
    for k in recall_checkpoints(len(texts_in_order)):
        found.update(t for t in texts_in_order[done:k] if t in members)
        done = k
        recall[str(k)] = len(found) / len(members) if members else 1.0
    return recall


def completeness(
    probed: ProbedModel,
    decoder: Decoder,
    text: str,
    position: Position,
    site: str,
    *,
    samples: int = 10_000,
    seed: int = 0,
    metric: str | None = None,
    epsilon: float | None = None,
    schedule: Schedule | None = None,
    batch_size: int = 1000,
    exact: ExactPreimage | None = None,
    exact_progress: Progress | None = None,
    sampling_progress: Progress | None = None,
) -> Completeness:
    """Sample ``samples`` inputs and compare them with the exact preimage of the same query
    (``exact``, when already computed, e.g. by ``exact_preimages`` for many queries at once).
    The progress callbacks hear (done, total) of the pass over the space and of the sampling."""
    if exact is None:
        exact = exact_preimage(
            probed, text, position, site, metric=metric, epsilon=epsilon, limit=0, progress=exact_progress
        )
    elif (exact.query_text, exact.site) != (text, probed.site(site).name):
        raise ValueError(f"the exact preimage given is of {exact.query_text!r} at {exact.site}, not this query")
    started = time.perf_counter()
    query = resolve_query(probed, text, position, site, exact.metric)
    generator = torch.Generator().manual_seed(seed)
    schedule = schedule or parse_schedule("auto")
    texts, inside = ordered_samples(
        decoder,
        probed,
        query,
        samples,
        schedule,
        generator,
        ball=exact.ball,
        batch_size=batch_size,
        progress=sampling_progress,
    )
    sampling_seconds = time.perf_counter() - started
    return Completeness(
        n_members=exact.n_members,
        space_size=exact.space_size,
        space=exact.space,
        samples=len(texts),
        precision=float(inside.float().mean()),
        recall=recall_at(texts, exact.member_texts()),
        seconds={"exact": exact.seconds, "decoder": round(sampling_seconds, 3)},
        schedule=schedule.name,
        exact=exact,
        sample_texts=texts,
    )


@dataclass
class EvaluationRun:
    """The members a reading finds for a number of probed-model evaluations."""

    member_texts: set[str]
    members: int
    """Samples inside ε, a repeat counted each time it was drawn; a member refinement found counts
    once when found, and again each time it is drawn after."""
    evaluations: int
    samples: int
    """Decoder samples drawn (refinement's candidates aside)."""

    def record(self, exact_members: set[str]) -> dict:
        """The run's figures, recall against the exact preimage's ``exact_members`` among them."""
        found = len(self.member_texts & exact_members)
        counted = RefinementCount(self.members, len(self.member_texts), self.evaluations)
        return {
            **counted.to_dict(),
            "samples": self.samples,
            "recall": found / len(exact_members) if exact_members else 1.0,
        }


DRY_SHARE = 0.02
"""A batch of draws in which fewer than this share are inputs not run before: the decoder has run
dry, and refinement gets evaluations that fresh draws would leave unspent."""
REFINED_PER_DRY_BATCH = 64
"""Near misses refined after each dry batch of draws, nearest first."""


def members_for_evaluations(
    decoder: Decoder,
    probed: ProbedModel,
    query: ResolvedQuery,
    evaluations: int,
    *,
    refine_per_sample: int,
    schedule: Schedule,
    metric: str,
    epsilon: float,
    seed: int = 0,
    chunk: int = 1000,
) -> EvaluationRun:
    """Draw and verify until ``evaluations`` inputs have run through the probed model: a drawn input
    already run costs nothing again. With ``refine_per_sample`` R, once a batch of draws is dry
    (``DRY_SHARE``), and once the draws end with evaluations left, the nearest near misses drawn so
    far get up to R candidates each (``decoder/refine.py``), a candidate already run costing nothing."""
    generator = torch.Generator().manual_seed(seed)
    seen, ball = {}, EpsilonBall(metric, epsilon)
    run = EvaluationRun(set(), 0, 0, 0)
    refiner = _PoolRefinement(decoder, probed, query, refine_per_sample, metric, epsilon, seed, known=seen)
    draws = draw_samples(decoder, probed, query, 100 * evaluations, schedule, generator, batch_size=chunk)
    for ids, _, _ in draws:
        rows = [tuple(row) for row in ids.tolist()]
        new = list(dict.fromkeys(row for row in rows if row not in seen))[: evaluations - run.evaluations]
        if new:
            verified = verify(probed, query.site, torch.tensor(new), query.activation, ball)
            seen.update(zip(new, verified.best.tolist()))
            run.evaluations += len(new)
            refiner.misses.add(new, verified.best, verified.best_at, ball)
        if len(new) < DRY_SHARE * len(rows):
            refiner.spend(run, evaluations)
        counted = [row for row in rows if row in seen]
        run.samples += len(counted)
        inside = [row for row in counted if ball.contains(seen[row])]
        run.members += len(inside)
        run.member_texts.update(probed.task.tokenizer.decode(list(row)) for row in set(inside))
        if run.evaluations >= evaluations:
            break
    while refiner.spend(run, evaluations):  # the draws ended with evaluations left: refine what is left
        pass
    return run


class _PoolRefinement:
    """Refinement of a reading's near misses, a batch of the nearest at a time, on the evaluations
    its ``EvaluationRun`` has left."""

    def __init__(self, decoder, probed, query, per_sample: int, metric: str, epsilon: float, seed: int, *, known):
        self.decoder, self.probed, self.query, self.per_sample, self.seed = decoder, probed, query, per_sample, seed
        self.options = {"evaluations_per_sample": per_sample, "metric": metric, "epsilon": epsilon, "known": known}
        self.misses = _NearMisses()

    def spend(self, run: EvaluationRun, evaluations: int) -> bool:
        """Refine up to ``REFINED_PER_DRY_BATCH`` near misses within the evaluations ``run`` has
        left of ``evaluations``, adding what they find to ``run``; whether any were refined."""
        refinable = min(REFINED_PER_DRY_BATCH, (evaluations - run.evaluations) // max(1, self.per_sample))
        if not (self.per_sample and self.misses and refinable):
            return False
        ids, best, best_at = self.misses.nearest(refinable)  # distinct, and already run
        seed = self.seed + run.evaluations  # each batch its own candidates
        query = self.query
        refined = refine(
            self.decoder, self.probed, query.site, query.activation, ids, best, best_at, seed=seed, **self.options
        )
        run.evaluations += refined.with_refinement.evaluations - len(ids)  # only the candidates it ran
        run.members += len(refined.ids)
        run.member_texts.update(self.probed.task.tokenizer.decode(row) for row in refined.ids.tolist())
        return True


class _NearMisses:
    """The drawn inputs outside ε but near it (``refine.NEAR_MISS``) that have not been refined yet."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, tuple, int]] = []

    def __bool__(self) -> bool:
        return bool(self.rows)

    def add(self, rows: list[tuple], best: torch.Tensor, best_at: torch.Tensor, ball: EpsilonBall) -> None:
        near = ball.near_misses(best, NEAR_MISS).tolist()
        self.rows += [(d, row, at) for row, d, at, n in zip(rows, best.tolist(), best_at.tolist(), near) if n]

    def nearest(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``n`` nearest, taken out: their ids (n, T), distances (n,) and best positions (n,)."""
        self.rows.sort(key=lambda entry: entry[0])
        taken, self.rows = self.rows[:n], self.rows[n:]
        ids = torch.tensor([row for _, row, _ in taken], dtype=torch.long)
        return ids, torch.tensor([d for d, _, _ in taken]), torch.tensor([at for _, _, at in taken])
