"""How complete and how precise a decoder is, measured against the exact ε-preimage."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace

import torch

from inversionview.decoder.build import decoder_sites
from inversionview.decoder.draws import Progress, draw_samples
from inversionview.decoder.model import Decoder
from inversionview.decoder.refine import RefinementCount, refine
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
    """Samples inside ε, a repeat counted each time it was drawn (refined members once each)."""
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
    already run costs nothing again, and with ``refine_per_sample`` R each new sample outside ε gets
    up to R evaluations of refinement (``decoder/refine.py``)."""
    generator = torch.Generator().manual_seed(seed)
    tokenizer, seen, ball = probed.task.tokenizer, {}, EpsilonBall(metric, epsilon)
    run = EvaluationRun(set(), 0, 0, 0)
    options = {"per_sample": refine_per_sample, "metric": metric, "epsilon": epsilon, "seed": seed}
    draws = draw_samples(decoder, probed, query, 100 * evaluations, schedule, generator, batch_size=chunk)
    for ids, _, _ in draws:
        rows = [tuple(row) for row in ids.tolist()]
        new = list(dict.fromkeys(row for row in rows if row not in seen))[: evaluations - run.evaluations]
        if new:
            verified = verify(probed, query.site, torch.tensor(new), query.activation, ball)
            best, at = verified.best, verified.best_at
            seen.update(zip(new, best.tolist()))
            run.evaluations += len(new)
            if refine_per_sample:
                left = evaluations - run.evaluations
                refined = _refined_members(decoder, probed, query, torch.tensor(new), best, at, left, **options)
                run.evaluations += refined.with_refinement.evaluations
                run.members += len(refined.ids)
                run.member_texts.update(tokenizer.decode(row) for row in refined.ids.tolist())
        counted = [row for row in rows if row in seen]
        run.samples += len(counted)
        inside = [row for row in counted if ball.contains(seen[row])]
        run.members += len(inside)
        run.member_texts.update(tokenizer.decode(list(row)) for row in set(inside))
        if run.evaluations >= evaluations:
            break
    return run


def _refined_members(
    decoder: Decoder,
    probed: ProbedModel,
    query: ResolvedQuery,
    ids: torch.Tensor,
    best: torch.Tensor,
    best_at: torch.Tensor,
    evaluations: int,
    *,
    per_sample: int,
    metric: str,
    epsilon: float,
    seed: int,
):
    """Refinement of the samples of ``ids`` (distinct) outside ε, as many of them as ``evaluations``
    allow at ``per_sample`` each, nearest first; its ``Refined.with_refinement.evaluations`` are
    those it spent."""
    misses = (~EpsilonBall(metric, epsilon).contains(best)).nonzero()[:, 0]
    misses = misses[best[misses].argsort()][: evaluations // per_sample]
    options = {"evaluations_per_sample": per_sample, "metric": metric, "epsilon": epsilon, "seed": seed}
    start = ids[misses], best[misses], best_at[misses]
    refined = refine(decoder, probed, query.site, query.activation, *start, **options)
    spent = refined.with_refinement.evaluations - len(misses)
    return replace(refined, with_refinement=replace(refined.with_refinement, evaluations=spent))
