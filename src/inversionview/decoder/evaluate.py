"""Decoder precision: the share of its samples that land inside the query's ε-preimage."""

from __future__ import annotations

import random

import torch

from inversionview.decoder.model import Decoder
from inversionview.inversion.distance import best_positions
from inversionview.inversion.verify import sample_ids, verify_ids
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site


def heldout_queries(probed: ProbedModel, n: int, seed: int, positions: str = "named") -> list[tuple[str, int]]:
    """``n`` held-out (text, position) queries, cycling through the task's named query positions
    (``positions="named"``), or at random text positions (``"random"``, and where the task names none)."""
    if positions not in ("named", "random"):
        raise ValueError(f"positions must be 'named' or 'random', not {positions!r}")
    task = probed.task
    rng = random.Random(seed)
    queries = []
    for i, text in enumerate(task.sample_texts(rng, n, split="heldout")):
        named = task.query_positions(text) if positions == "named" else []
        if named:
            position = named[i % len(named)]
        else:
            position = rng.randrange(1, len(task.encode(text)) - 1)
        queries.append((text, position))
    return queries


@torch.no_grad()
def query_precisions(
    decoder: Decoder,
    probed: ProbedModel,
    site: Site,
    queries: list[tuple[str, int]],
    *,
    samples_per_query: int = 32,
    temperature: float = 1.0,
    epsilon: float = 0.1,
    metric: str = "euclidean",
    seed: int = 0,
) -> torch.Tensor:
    """Share of each query's samples whose best position is within ``epsilon`` of it: (Q,)."""
    ids, _ = probed.encode_batch([text for text, _ in queries])
    acts = probed.activations(ids, [site])[0][site]
    query_vectors = acts[torch.arange(len(queries)), torch.tensor([pos for _, pos in queries])]  # (Q, d)
    repeated = query_vectors.repeat_interleave(samples_per_query, dim=0)
    generator = torch.Generator().manual_seed(seed)
    samples = sample_ids(decoder, probed, site, repeated, temperature=temperature, generator=generator)
    best, _ = best_positions(verify_ids(probed, site, samples, repeated, metric))
    return (best <= epsilon).float().view(len(queries), samples_per_query).mean(-1)


def site_precision(
    decoder: Decoder, probed: ProbedModel, site: Site, queries: list[tuple[str, int]], **options
) -> float:
    """Share of samples, over all queries, whose best position is within ``epsilon`` of the query
    (``options`` as for ``query_precisions``)."""
    return float(query_precisions(decoder, probed, site, queries, **options).mean())
