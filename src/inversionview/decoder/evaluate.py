"""Decoder precision: the share of its samples that land inside the query's ε-preimage."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from inversionview.decoder.build import decoder_sites
from inversionview.decoder.model import Decoder
from inversionview.decoder.sampling import sample_ids
from inversionview.probed.distance import EpsilonBall
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site
from inversionview.probed.verify import verify


def heldout_queries(probed: ProbedModel, n: int, seed: int, positions: str = "named") -> list[tuple[str, int]]:
    """``n`` held-out (text, position) queries, cycling through the task's named query positions
    (``positions="named"``), or at random text positions (``"random"``, and where the task names none)."""
    if positions not in ("named", "random"):
        raise ValueError(f"positions must be 'named' or 'random', not {positions!r}")
    task = probed.task
    rng = random.Random(seed)
    queries = []
    for i, text in enumerate(task.sample_texts(rng, n, split="heldout", decoder=True)):
        named = task.query_positions(text) if positions == "named" else []
        if named:
            position = named[i % len(named)]
        else:
            position = rng.randrange(1, len(task.encode(text)) - 1)
        queries.append((text, position))
    return queries


def query_position_name(probed: ProbedModel, text: str, position: int) -> str | None:
    """The name of ``text``'s named position ``position`` (None if it has no name)."""
    return next((name for name, at in probed.task.named_positions(text).items() if at == position), None)


@torch.no_grad()
def query_precisions(
    decoder: Decoder,
    probed: ProbedModel,
    site: Site,
    queries: list[tuple[str, int]],
    *,
    samples_per_query: int = 32,
    ball: EpsilonBall,
    temperature: float = 1.0,
    seed: int = 0,
) -> torch.Tensor:
    """Share of each query's samples inside the ε-``ball`` around it: (Q,)."""
    ids, _ = probed.encode_batch([text for text, _ in queries])
    acts = probed.activations(ids, [site])[0][site]
    query_vectors = acts[torch.arange(len(queries)), torch.tensor([pos for _, pos in queries])]  # (Q, d)
    repeated = query_vectors.repeat_interleave(samples_per_query, dim=0)
    generator = torch.Generator().manual_seed(seed)
    samples = sample_ids(decoder, probed, site, repeated, temperature=temperature, generator=generator)
    inside = verify(probed, site, samples, repeated, ball).inside
    return inside.float().view(len(queries), samples_per_query).mean(-1)


def site_precision(
    decoder: Decoder, probed: ProbedModel, site: Site, queries: list[tuple[str, int]], **options
) -> float:
    """Share of samples, over all queries, inside the ε-ball around their query (``options`` as
    for ``query_precisions``)."""
    return float(query_precisions(decoder, probed, site, queries, **options).mean())


@dataclass
class DecoderPrecision:
    """A decoder's precision on a seeded set of held-out queries, at every site it serves."""

    by_site: dict[str, float]
    per_query: torch.Tensor
    """(sites, queries): each site's share of samples inside ε, query by query."""
    queries: list[tuple[str, int]]

    @property
    def mean(self) -> float:
        """Mean per-site precision: the figure the README quotes for each bundled decoder."""
        return sum(self.by_site.values()) / len(self.by_site)

    @property
    def standard_error(self) -> float:
        """Of the mean, over queries (every site reads the same queries)."""
        query_means = self.per_query.mean(0)
        return float(query_means.std() / len(query_means) ** 0.5) if len(query_means) > 1 else float("nan")

    @property
    def lowest(self) -> tuple[str, float]:
        site = min(self.by_site, key=self.by_site.get)
        return site, self.by_site[site]


def decoder_precision(
    decoder: Decoder,
    probed: ProbedModel,
    *,
    queries: int = 40,
    samples: int = 50,
    seed: int = 2024,
    positions: str = "named",
    temperature: float = 1.0,
    metric: str | None = None,
    epsilon: float | None = None,
    sites: list[str] | None = None,
) -> DecoderPrecision:
    """Per-site precision on ``queries`` seeded held-out queries (``heldout_queries``), ``samples``
    samples each at ``temperature``, at ``sites`` (default: every site the decoder serves); metric
    and ε are the probed model's unless given."""
    metric, epsilon = probed.distance_settings(metric, epsilon)
    chosen = heldout_queries(probed, queries, seed=seed, positions=positions)
    options = {"samples_per_query": samples, "ball": EpsilonBall(metric, epsilon), "temperature": temperature}
    sites = decoder_sites(probed, sites or decoder.config.sites)
    per_query = torch.stack([query_precisions(decoder, probed, s, chosen, seed=seed, **options) for s in sites])
    by_site = {site.name: float(row.mean()) for site, row in zip(sites, per_query)}
    return DecoderPrecision(by_site, per_query, chosen)


USABLE_PRECISION = 0.5
"""From here half a reading's samples are members: a view shows the preimage well at default settings."""
LOW_PRECISION = 0.1


def precision_verdict(mean: float) -> str:
    """What a decoder's mean precision means for readings, and how to go on."""
    if mean >= USABLE_PRECISION:
        return "usable: most samples of a reading fall inside its ε-preimage"
    if mean >= LOW_PRECISION:
        return (
            "usable with more samples (every sample is verified, so readings stay correct); more --steps "
            "would sharpen it: the same command with a larger --steps or --minutes resumes the run"
        )
    return (
        "not usable yet: few samples land inside ε; train on with a larger --steps or --minutes (the run resumes), "
        "or on a GPU (--device cuda --batch-size 1024). The bundled decoders took 50,000-100,000 steps"
    )
