"""Checking inputs against the probed model: every position's distance to a query activation, and
whether the best one lies inside the ε-ball.

Sample, verify, keep: a reading, a decoder's precision, refinement, the completeness measurement
and the training reward all judge their samples with ``verify`` (or ``verify_at_sites``), so it
lives here, before all of them in the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from inversionview.probed.distance import EpsilonBall, best_positions, position_distances
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site
from inversionview.probed.whitening import in_metric_space
from inversionview.tasks import before_eos


def sequence_lengths(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Length of each row up to and including its first EOS after BOS (the whole row if none), (N,).

    Position 0 is never read as EOS: some tokenizers (GPT-2's) use one token for both."""
    is_eos = ids[:, 1:] == eos_id
    first = torch.where(is_eos.any(-1), is_eos.float().argmax(-1), torch.full_like(ids[:, 0], ids.shape[1] - 2))
    return first + 2


def queryable(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(N, T) mask of positions that can hold a query: BOS and text tokens, not EOS or padding."""
    return before_eos(sequence_lengths(ids, eos_id), ids.shape[1])


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator a RuntimeError that says so."""
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


@torch.no_grad()
def activation_batches(
    probed: ProbedModel, ids: torch.Tensor, sites: list[Site], batch_size: int = 1024
) -> Iterator[tuple[int, torch.Tensor, dict[Site, torch.Tensor]]]:
    """The probed model over ``ids`` (N, T) in batches: (first row, the batch's ids, its activations
    at ``sites``). A batch that runs out of memory (a large model) is retried in halves, down to one
    input at a time."""
    start = 0
    while start < ids.shape[0]:
        chunk = ids[start : start + batch_size]
        try:
            acts = probed.activations(chunk, sites)[0]
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if batch_size == 1 or not is_out_of_memory(exc):
                raise
            batch_size //= 2
            continue
        yield start, chunk, acts
        start += len(chunk)


@torch.no_grad()
def verify_ids(
    probed: ProbedModel, site: Site, ids: torch.Tensor, queries: torch.Tensor, metric: str, batch_size: int = 1024
) -> torch.Tensor:
    """Distance of every position of every sample to its query: (N, T), inf where not queryable.

    ``queries`` is (d,) for one query or (N, d) for one per sample. Against one query, an input
    that repeats is run once: samples from a sure decoder repeat many times.
    """
    if queries.dim() == 1:
        unique, inverse = torch.unique(ids, dim=0, return_inverse=True)
        if unique.shape[0] < ids.shape[0]:
            return _distances(probed, site, unique, queries, metric, batch_size)[inverse]
    return _distances(probed, site, ids, queries, metric, batch_size)


def _distances(
    probed: ProbedModel, site: Site, ids: torch.Tensor, queries: torch.Tensor, metric: str, batch_size: int
) -> torch.Tensor:
    """``verify_ids`` without its merging of repeated inputs."""
    eos_id = probed.task.tokenizer.eos_id
    out = []
    queries, compared_as = in_metric_space(probed, site, queries, metric)
    for start, chunk, acts in activation_batches(probed, ids, [site], batch_size):
        query = queries if queries.dim() == 1 else queries[start : start + len(chunk)]
        activations = in_metric_space(probed, site, acts[site], metric)[0]
        out.append(position_distances(query, activations, queryable(chunk, eos_id), compared_as))
    return torch.cat(out)


@dataclass(frozen=True)
class Verified:
    """Samples judged against their queries: every position's distance, the best one and where it
    is, and whether it lies inside the ε-ball."""

    distances: torch.Tensor
    """(N, T), inf where no query can sit (EOS, padding)."""
    best: torch.Tensor
    """(N,) each sample's best-position distance."""
    best_at: torch.Tensor
    """(N,) that position."""
    inside: torch.Tensor
    """(N,) bool: the sample is a member of the ε-preimage."""

    @classmethod
    def judged(cls, distances: torch.Tensor, ball: EpsilonBall) -> Verified:
        best, best_at = best_positions(distances)
        return cls(distances, best, best_at, ball.contains(best))


def verify(probed: ProbedModel, site: Site, ids: torch.Tensor, queries: torch.Tensor, ball: EpsilonBall) -> Verified:
    """Run the probed model on samples ``ids`` (N, T) and judge each against its query at ``site``:
    ``queries`` is (d,) for one query or (N, d) for one per sample (``verify_ids``)."""
    return Verified.judged(verify_ids(probed, site, ids, queries, ball.metric), ball)


@torch.no_grad()
def verify_at_sites(
    probed: ProbedModel,
    sites: list[Site],
    ids: torch.Tensor,
    queries: torch.Tensor,
    site_ids: torch.Tensor,
    ball: EpsilonBall,
) -> Verified:
    """``verify`` for samples each of its own query at its own site: ids (N, T), queries (N, d) and
    site_ids (N,) indexing ``sites``; the probed model runs once for all of them."""
    used = sorted(set(site_ids.tolist()))
    acts, _ = probed.activations(ids, [sites[i] for i in used])
    at_site = [in_metric_space(probed, sites[i], acts[sites[i]], ball.metric)[0] for i in used]
    row_site = torch.tensor([used.index(i) for i in site_ids.tolist()])
    sample_acts = torch.stack(at_site)[row_site, torch.arange(ids.shape[0])]  # (N, T, d)
    queries = queries.cpu().float().clone()
    for i in used:  # each row's query, in its own site's space
        rows = site_ids.cpu() == i
        queries[rows], compared_as = in_metric_space(probed, sites[i], queries[rows], ball.metric)
    valid = queryable(ids, probed.task.tokenizer.eos_id)
    return Verified.judged(position_distances(queries, sample_acts, valid, compared_as), ball)


@torch.no_grad()
def query_activation(probed: ProbedModel, site: Site, text: str, position: int) -> torch.Tensor:
    """The activation (d,) at one site and position of ``text``."""
    ids, _ = probed.encode_batch([text])
    return probed.activations(ids, [site])[0][site][0, position]
