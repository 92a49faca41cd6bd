"""Drawing inputs from a decoder for a probed model's activations, and scoring inputs under it.

Decoder training (its precision checks and its reward) and reading an activation both draw samples
this way, so it lives here, before reading in the pipeline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inversionview.decoder.distinct import sample_distinct
from inversionview.decoder.model import Decoder, next_token_targets
from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site, canonical_site
from inversionview.probed.verify import sequence_lengths


def site_index(decoder: Decoder, site: Site) -> int:
    """The decoder's id for a site (aliases resolved); a site it was not trained for is a one-line error."""
    name = canonical_site(site).name
    if name not in decoder.config.sites:
        raise UserError(f"this decoder does not read {site.name}; it reads {', '.join(decoder.config.sites)}")
    return decoder.config.sites.index(name)


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
    prefix: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """One decoder sample per query row (N, d): token ids (N, max_len).

    ``noise`` perturbs each query by a random direction of norm ``noise * ‖q‖`` before decoding,
    which spreads samples over inputs the decoder finds less likely. With ``prefix`` (N, max_len)
    and ``keep`` (N,), each row keeps its prefix's first ``keep`` tokens and samples the rest.
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
        prefix=prefix,
        keep=keep,
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
def next_token_logits(decoder: Decoder, ids: torch.Tensor, activation: torch.Tensor, site_id: int) -> torch.Tensor:
    """Teacher-forced decoder logits for each token after BOS given its prefix and one activation
    (d,): (N, T - 1, vocab), on the decoder's device."""
    batch, device = ids.shape[0], decoder.device
    site = torch.full((batch,), site_id, device=device)
    return decoder(ids[:, :-1].to(device), activation.float().to(device).expand(batch, -1), site)


def token_log_probs_from(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Each token's log-probability after BOS under ``next_token_logits``: (N, T - 1)."""
    return logits.log_softmax(-1).gather(-1, ids[:, 1:, None].to(logits.device))[..., 0].cpu()


@torch.no_grad()
def token_log_probs(decoder: Decoder, ids: torch.Tensor, activation: torch.Tensor, site_id: int) -> torch.Tensor:
    """Teacher-forced decoder log-probability of each token after BOS given its prefix and one
    activation (d,): (N, T - 1)."""
    return token_log_probs_from(next_token_logits(decoder, ids, activation, site_id), ids)


def sequence_log_probs(
    decoder: Decoder, ids: torch.Tensor, activation: torch.Tensor, site_ids: torch.Tensor, eos_id: int
) -> torch.Tensor:
    """Decoder log-probability of each whole input, EOS included, given its own activation
    (N, d) and site (N,), with gradient: (N,)."""
    targets = next_token_targets(ids, sequence_lengths(ids, eos_id)).to(decoder.device)
    device = decoder.device
    logits = decoder(ids[:, :-1].to(device), activation.float().to(device), site_ids.to(device))  # (N, T-1, V)
    token_loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")  # (N, T-1)
    return -token_loss.sum(-1)


@torch.no_grad()
def log_probs_at_temperatures(
    decoder: Decoder, ids: torch.Tensor, query: torch.Tensor, site_id: int, eos_id: int, temperatures: list[float]
) -> torch.Tensor:
    """The log-probability of drawing each row of ``ids`` (N, T), EOS included, given one ``query``
    (d,), at each sampling temperature: (len(temperatures), N). Temperature 0 (greedy) is read as
    0.001, where the likeliest sequence has nearly all the probability."""
    return log_probs_at_temperatures_from(next_token_logits(decoder, ids, query, site_id), ids, eos_id, temperatures)


def log_probs_at_temperatures_from(
    logits: torch.Tensor, ids: torch.Tensor, eos_id: int, temperatures: list[float]
) -> torch.Tensor:
    """``log_probs_at_temperatures`` from the logits of a pass already made (``next_token_logits``)."""
    targets = next_token_targets(ids, sequence_lengths(ids, eos_id)).to(logits.device)
    scaled = [logits / max(t, 1e-3) for t in temperatures]  # (N, T-1, V) each
    losses = [F.cross_entropy(s.transpose(1, 2), targets, ignore_index=-100, reduction="none") for s in scaled]
    return -torch.stack([loss.sum(-1) for loss in losses]).cpu()


def draw_chances(log_probs: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """The chance that a schedule's draws include each input at least once: 1 − ∏ (1 − q_k)^{n_k},
    from its log-probability at each pair's temperature, ``log_probs`` (K, N), and the samples
    drawn at each, ``counts`` (K,) -> (N,), at least 1e-12 (activation noise left out)."""
    never = (torch.tensor(counts, dtype=torch.float)[:, None] * torch.log1p(-log_probs.exp().clamp(max=1 - 1e-12))).sum(
        0
    )
    return (-torch.expm1(never)).clamp_min(1e-12)


@torch.no_grad()
def query_log_probs(
    decoder: Decoder, probed: ProbedModel, ids: torch.Tensor, query: torch.Tensor, site: Site, batch_size: int = 4096
) -> torch.Tensor:
    """Decoder log-probability of generating each row of ``ids`` (N, T) given one ``query`` (d,)
    at ``site``: (N,)."""
    eos = probed.task.tokenizer.eos_id
    site_id = torch.tensor([site_index(decoder, site)], device=decoder.device)
    out = []
    for start in range(0, ids.shape[0], batch_size):
        chunk = ids[start : start + batch_size]
        rows = chunk.shape[0]
        out.append(sequence_log_probs(decoder, chunk, query.expand(rows, -1), site_id.expand(rows), eos).cpu())
    return torch.cat(out)
