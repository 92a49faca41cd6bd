"""Drawing a query's samples from the decoder by its schedule, in batches: a reading and the
completeness measurement draw them the same way, from here."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from inversionview.decoder.model import Decoder
from inversionview.decoder.sampling import distinct_sample_ids, sample_ids
from inversionview.decoder.schedule import Schedule
from inversionview.probed.model import ProbedModel
from inversionview.probed.query import ResolvedQuery

Progress = Callable[[int, int], None]
"""Called with (samples done, samples in all)."""


def draw_samples(
    decoder: Decoder,
    probed: ProbedModel,
    query: ResolvedQuery,
    samples: int,
    schedule: Schedule,
    generator: torch.Generator,
    *,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> Iterator[tuple[torch.Tensor, float, float]]:
    """Decoder samples for a query in batches: (ids (n, max_len), temperature, noise), the schedule's
    pairs in turn. A distinct schedule yields one batch of up to ``samples`` different inputs."""
    if schedule.distinct:
        ((temperature, _),) = schedule.pairs
        ids = distinct_sample_ids(
            decoder, probed, query.site, query.activation, samples, temperature=temperature, generator=generator
        )
        if progress:
            progress(samples, samples)
        yield ids, temperature, 0.0
        return
    done = 0
    for temperature, noise, count in schedule.split(samples):
        for start in range(0, count, batch_size):
            n = min(batch_size, count - start)
            activations = query.activation.expand(n, -1)
            ids = sample_ids(
                decoder, probed, query.site, activations, temperature=temperature, noise=noise, generator=generator
            )
            done += n
            if progress:
                progress(done, samples)
            yield ids, temperature, noise
