"""Reading one activation: sample inputs from the decoder, verify each against the probed model,
keep each sample's best position, and colour its tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import torch

from inversionview.decoder.draws import Progress, draw_samples
from inversionview.decoder.model import Decoder
from inversionview.decoder.refine import check_refine
from inversionview.decoder.refine import refine as refine_samples
from inversionview.decoder.sampling import (
    draw_chances,
    log_probs_at_temperatures_from,
    next_token_logits,
    sample_ids,
    site_index,
    token_log_probs,
    token_log_probs_from,
)
from inversionview.decoder.schedule import Schedule, parse_schedule
from inversionview.errors import UserError
from inversionview.inversion.result import InversionResult, Query, Sample, Settings
from inversionview.probed.distance import EpsilonBall
from inversionview.probed.model import ProbedModel
from inversionview.probed.query import Position, ResolvedQuery, resolve_query
from inversionview.probed.sites import Site
from inversionview.probed.verify import query_activation, sequence_lengths, verify
from inversionview.probed.whitening import whitening_record
from inversionview.tasks.tokenizer import display_tokens

DrawCounts = tuple[list[float], list[int]]
"""A schedule's temperature at each of its pairs and the samples drawn at each (``Schedule.draw_counts``)."""


def token_probabilities(decoder: Decoder, ids: torch.Tensor, activation: torch.Tensor, site_id: int) -> torch.Tensor:
    """Decoder probability of each token of ``ids`` (N, T) given its prefix and one activation: (N, T),
    0 at position 0 (BOS, which is given, not generated)."""
    return _with_bos(token_log_probs(decoder, ids, activation, site_id).exp())


def _with_bos(probs: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros(probs.shape[0], 1), probs], dim=1)


def _inclusion(
    logits: torch.Tensor, ids: torch.Tensor, inside: torch.Tensor, chances: DrawCounts | None, eos_id: int
) -> list[float | None]:
    """Each member's chance of being among the schedule's draws (``draw_chances``), from the logits
    of the pass that coloured its tokens; None for the rest, or when ``chances`` is not asked."""
    found: list[float | None] = [None] * len(ids)
    rows = inside.nonzero()[:, 0]
    if chances is None or not len(rows):
        return found
    temperatures, counts = chances
    log_probs = log_probs_at_temperatures_from(logits[rows.to(logits.device)], ids[rows], eos_id, temperatures)
    for row, chance in zip(rows.tolist(), draw_chances(log_probs, counts).tolist()):
        found[row] = chance
    return found


def verified_samples(
    decoder: Decoder,
    probed: ProbedModel,
    query: ResolvedQuery,
    baseline: torch.Tensor,
    ids: torch.Tensor,
    *,
    metric: str,
    epsilon: float,
    temperature: float,
    noise: float,
    chances: DrawCounts | None = None,
) -> list[Sample]:
    """Samples ``ids`` (N, max_len), each verified against the query and its tokens valued by how
    much the query changed their probability against the no-information ``baseline`` activation;
    with ``chances``, each member's chance of being drawn, from the same decoder pass."""
    task, tokenizer = probed.task, probed.task.tokenizer
    verified = verify(probed, query.site, ids, query.activation, EpsilonBall(metric, epsilon))
    sid = site_index(decoder, query.site)
    with torch.no_grad():
        logits = next_token_logits(decoder, ids, query.activation, sid)
        inclusion = _inclusion(logits, ids, verified.inside, chances, tokenizer.eos_id)
        at_query = _with_bos(token_log_probs_from(logits, ids).exp())
    del logits  # (N, T, vocab): large for a text model's vocabulary
    change = at_query - token_probabilities(decoder, ids, baseline, sid)
    lengths = sequence_lengths(ids, tokenizer.eos_id) - 1  # drop EOS: tokens shown are BOS + text
    samples = []
    for row in range(ids.shape[0]):
        length = int(lengths[row])
        row_ids = ids[row, :length].tolist()
        text = tokenizer.decode(row_ids)
        samples.append(
            Sample(
                text=text,
                tokens=display_tokens(tokenizer, row_ids),
                distance=float(verified.best[row]),
                best_position=int(verified.best_at[row]),
                in_preimage=bool(verified.inside[row]),
                probability_change=[round(float(c), 4) for c in change[row, :length]],
                position_distances=[round(float(d), 4) for d in verified.distances[row, :length]],
                temperature=temperature,
                noise=noise,
                annotation=task.annotate(text),
                inclusion=inclusion[row],
            )
        )
    return samples


def check_counts(samples: int, refine: int) -> None:
    """Refuse a reading of no samples, or a negative refinement."""
    if samples < 1:
        raise UserError("`samples` must be at least 1")
    check_refine(refine)


def _verified_draws(
    decoder: Decoder,
    probed: ProbedModel,
    query: ResolvedQuery,
    baseline: torch.Tensor,
    draws: Iterator[tuple[torch.Tensor, float, float]],
    *,
    metric: str,
    epsilon: float,
    chances: DrawCounts | None = None,
) -> tuple[torch.Tensor, list[Sample]]:
    """Every batch ``draw_samples`` yields, verified: all the ids drawn (N, max_len) and their samples."""
    drawn, results = [], []
    for ids, temperature, noise in draws:
        drawn.append(ids)
        options = {"metric": metric, "epsilon": epsilon, "temperature": temperature, "noise": noise}
        options["chances"] = chances
        results += verified_samples(decoder, probed, query, baseline, ids, **options)
    return torch.cat(drawn), results


def refined_samples(
    decoder: Decoder,
    probed: ProbedModel,
    query: ResolvedQuery,
    baseline: torch.Tensor,
    ids: torch.Tensor,
    drawn: list[Sample],
    evaluations_per_sample: int,
    seed: int,
    chances: DrawCounts | None = None,
    *,
    metric: str,
    epsilon: float,
) -> tuple[list[Sample], dict | None]:
    """The members that refining the drawn samples (``ids``, verified as ``drawn``) finds, as
    samples flagged ``refined``, and refinement's counts (``Refined.to_dict``); none without
    ``evaluations_per_sample``."""
    if not evaluations_per_sample:
        return [], None
    best = torch.tensor([sample.distance for sample in drawn])
    best_at = torch.tensor([sample.best_position for sample in drawn])
    options = {"evaluations_per_sample": evaluations_per_sample, "metric": metric, "epsilon": epsilon, "seed": seed}
    found = refine_samples(decoder, probed, query.site, query.activation, ids, best, best_at, **options)
    if not len(found.ids):
        return [], found.to_dict()
    options = {"metric": metric, "epsilon": epsilon, "temperature": 1.0, "noise": 0.0, "chances": chances}
    extra = verified_samples(decoder, probed, query, baseline, found.ids, **options)
    return [replace(sample, refined=True) for sample in extra], found.to_dict()


BOUNDARY_PAIRS = ((1.5, 0.1), (2.0, 0.25), (3.0, 0.5))
"""(temperature, noise) pairs tried in turn, each broader than the last, when no scheduled sample fell
outside ε: a reading is read by its contrast, so the view needs samples on both sides."""


def search_boundary(
    decoder: Decoder,
    probed: ProbedModel,
    query: ResolvedQuery,
    baseline: torch.Tensor,
    count: int,
    generator: torch.Generator,
    *,
    metric: str,
    epsilon: float,
) -> tuple[list[Sample], str]:
    """Up to ``count`` samples at each of ``BOUNDARY_PAIRS`` in turn, until some fall outside ε; and a
    sentence on what was found."""
    found: list[Sample] = []
    for temperature, noise in BOUNDARY_PAIRS:
        ids = sample_ids(
            decoder,
            probed,
            query.site,
            query.activation.expand(count, -1),
            temperature=temperature,
            noise=noise,
            generator=generator,
        )
        batch = verified_samples(
            decoder, probed, query, baseline, ids, metric=metric, epsilon=epsilon, temperature=temperature, noise=noise
        )
        for sample in batch:
            sample.boundary_search = True
        found += batch
        if outside := sum(not sample.in_preimage for sample in batch):
            return found, (
                f"no scheduled sample fell outside ε; {len(found)} more, drawn at up to T = {temperature:g} with "
                f"noise {noise:g}, found {outside} outside (they do not count in the precision)"
            )
    return found, (
        f"no sample fell outside ε, nor any of {len(found)} more drawn at up to T = {temperature:g} with noise "
        f"{noise:g}: few inputs give a different activation here, or ε is wide"
    )


def reading_settings(
    probed: ProbedModel,
    site: Site,
    decoder_name: str,
    samples: int,
    seed: int,
    metric: str,
    epsilon: float,
    schedule: Schedule,
) -> Settings:
    """What a reading records of how it was made."""
    pairs = [list(p) for p in schedule.pairs]
    whitening = whitening_record(probed, site, metric)
    return Settings(
        probed.source,
        probed.content_hash,
        decoder_name,
        samples,
        seed,
        metric,
        epsilon,
        schedule.name,
        pairs,
        whitening,
    )


def invert(
    probed: ProbedModel,
    decoder: Decoder,
    text: str,
    position: Position,
    site: str | Site,
    *,
    samples: int = 1000,
    seed: int = 0,
    metric: str | None = None,
    epsilon: float | None = None,
    schedule: Schedule | None = None,
    batch_size: int = 500,
    decoder_name: str = "bundled",
    progress: Progress | None = None,
    find_boundary: bool = True,
    refine: int = 0,
    inclusion: bool = False,
) -> InversionResult:
    """Sample ``samples`` inputs whose activation at ``site`` should match ``text``'s at ``position``.

    Returns every sample with its distance to the query (its best position's), sorted nearest first;
    ``metric`` and ``epsilon`` are the probed model's unless given. ``find_boundary``: when every
    sample falls inside ε, draw more at broader settings so the view shows the boundary. ``refine``
    R: each distinct sample outside ε gets up to R evaluations to become a member (flagged
    ``refined``). ``inclusion``: each member carries its chance of being drawn (``Sample.inclusion``).
    """
    started = time.perf_counter()
    metric, epsilon = probed.distance_settings(metric, epsilon)
    check_counts(samples, refine)
    query = resolve_query(probed, text, position, site, metric)
    schedule = schedule or parse_schedule("auto")
    # A causal model's BOS sees nothing: no information. An encoder's sees the whole input, so its
    # baseline is the empty input's.
    baseline = query_activation(probed, query.site, "" if probed.is_encoder else text, 0)
    generator = torch.Generator().manual_seed(seed)
    chances = schedule.draw_counts(samples) if inclusion else None
    options = {"metric": metric, "epsilon": epsilon}
    draws = draw_samples(decoder, probed, query, samples, schedule, generator, batch_size=batch_size, progress=progress)
    drawn, results = _verified_draws(decoder, probed, query, baseline, draws, chances=chances, **options)
    precision = sum(s.in_preimage for s in results) / len(results)
    extra, refined = refined_samples(decoder, probed, query, baseline, drawn, results, refine, seed, chances, **options)
    results += extra
    boundary_note = None
    if find_boundary and precision == 1.0:
        count = max(50, samples // 10)
        extra, boundary_note = search_boundary(decoder, probed, query, baseline, count, generator, **options)
        results += extra
    results.sort(key=lambda s: s.distance)
    settings = reading_settings(probed, query.site, decoder_name, samples, seed, metric, epsilon, schedule)
    return InversionResult(
        query=Query(text=text, tokens=probed.query_tokens(text), position=query.position, site=query.site.name),
        settings=settings,
        samples=results,
        precision=precision,
        seconds=round(time.perf_counter() - started, 3),
        annotation=probed.task.annotate(text),
        boundary_note=boundary_note,
        refined=refined,
    )


TIMED_SAMPLES = 64
"""Samples a cost estimate times before a long reading."""


def estimated_seconds(
    decoder: Decoder, probed: ProbedModel, text: str, position: Position, site: str | Site, samples: int, **options
) -> float:
    """About how long ``invert`` with ``samples`` samples (and ``options``) takes here, from timing
    ``TIMED_SAMPLES`` of them. Reading time grows about linearly with the samples."""
    started = time.perf_counter()
    invert(probed, decoder, text, position, site, samples=TIMED_SAMPLES, find_boundary=False, **options)
    return (time.perf_counter() - started) * samples / TIMED_SAMPLES
