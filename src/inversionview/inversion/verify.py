"""Generation and verification: decoder samples in, per-position distances to the query out."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from inversionview.decoder.distinct import sample_distinct
from inversionview.decoder.model import Decoder
from inversionview.inversion.distance import position_distances
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site, canonical_site


def site_index(decoder: Decoder, site: Site) -> int:
    """The decoder's id for a site (aliases resolved)."""
    return decoder.config.sites.index(canonical_site(site).name)


def sequence_lengths(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Length of each row up to and including its first EOS after BOS (the whole row if none), (N,).

    Position 0 is never read as EOS: some tokenizers (GPT-2's) use one token for both."""
    is_eos = ids[:, 1:] == eos_id
    first = torch.where(is_eos.any(-1), is_eos.float().argmax(-1), torch.full_like(ids[:, 0], ids.shape[1] - 2))
    return first + 2


def queryable(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(N, T) mask of positions that can hold a query: BOS and text tokens, not EOS or padding."""
    lengths = sequence_lengths(ids, eos_id)
    positions = torch.arange(ids.shape[1], device=ids.device)
    return positions[None, :] < (lengths - 1)[:, None]


@torch.no_grad()
def sample_ids(
    decoder: Decoder,
    probed: ProbedModel,
    site: Site,
    queries: torch.Tensor,
    *,
    temperature: float,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One decoder sample per query row (N, d): token ids (N, max_len).

    ``noise`` perturbs each query by a random direction of norm ``noise * ‖q‖`` before decoding,
    which spreads samples over inputs the decoder finds less likely.
    """
    queries = queries.float()  # the probed model may run in bfloat16; the decoder reads float32
    if noise > 0:
        direction = torch.randn(queries.shape, generator=generator)
        direction = direction / direction.norm(dim=-1, keepdim=True)
        queries = queries + noise * queries.norm(dim=-1, keepdim=True) * direction
    tok = probed.task.tokenizer
    sites = torch.full((queries.shape[0],), site_index(decoder, site), dtype=torch.long, device=decoder.device)
    return decoder.generate(
        queries.to(decoder.device),
        sites,
        bos_id=tok.bos_id,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        temperature=temperature,
        generator=generator,
    ).cpu()


def distinct_sample_ids(
    decoder: Decoder,
    probed: ProbedModel,
    site: Site,
    query: torch.Tensor,
    k: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Up to ``k`` different inputs for one query (d,), drawn without replacement, in draw order:
    token ids (k, max_len) (``decoder/distinct.py``)."""
    tok = probed.task.tokenizer
    return sample_distinct(
        decoder,
        query,
        site_index(decoder, site),
        k,
        bos_id=tok.bos_id,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        temperature=temperature,
        generator=generator,
    )


@torch.no_grad()
def token_log_probs(decoder: Decoder, ids: torch.Tensor, activation: torch.Tensor, site_id: int) -> torch.Tensor:
    """Teacher-forced decoder log-probability of each token after BOS given its prefix and one
    activation (d,): (N, T - 1)."""
    batch, device = ids.shape[0], decoder.device
    ids = ids.to(device)
    site = torch.full((batch,), site_id, device=device)
    logits = decoder(ids[:, :-1], activation.float().to(device).expand(batch, -1), site)
    return logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0].cpu()


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

    ``queries`` is (d,) for one query or (N, d) for one per sample.
    """
    eos_id = probed.task.tokenizer.eos_id
    out = []
    for start, chunk, acts in activation_batches(probed, ids, [site], batch_size):
        query = queries if queries.dim() == 1 else queries[start : start + len(chunk)]
        out.append(position_distances(query, acts[site], queryable(chunk, eos_id), metric))
    return torch.cat(out)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator a RuntimeError that says so."""
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text
