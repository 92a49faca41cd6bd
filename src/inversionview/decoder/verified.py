"""Fine-tuning a decoder toward precision: its own samples, checked by the probed model, as reward.

Teaching the decoder to write back true inputs (maximum likelihood) never tells it which inputs to
avoid: a decoder that cannot quite read an activation spreads probability over near misses, such as
a count one too high. Verification names those misses. For each query the decoder draws a group of
samples, the probed model measures each one's distance to the query, and the loss raises the
log-probability of the samples inside ε and lowers that of the samples outside, relative to the
group's mean reward (a policy gradient whose baseline is the group itself). Queries whose samples
all land on the same side teach nothing and cost no backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inversionview.decoder.model import Decoder, next_token_targets
from inversionview.inversion.distance import best_positions, position_distances
from inversionview.inversion.verify import queryable, sequence_lengths
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site


@torch.no_grad()
def sample_distances(
    probed: ProbedModel,
    sites: list[Site],
    ids: torch.Tensor,
    queries: torch.Tensor,
    site_ids: torch.Tensor,
    metric: str,
) -> torch.Tensor:
    """Each sample's best-position distance to its own query: ids (N, T), queries (N, d) and
    site_ids (N,) indexing ``sites`` -> (N,)."""
    used = sorted(set(site_ids.tolist()))
    acts, _ = probed.activations(ids, [sites[i] for i in used])
    at_site = torch.stack([acts[sites[i]] for i in used])  # (S_used, N, T, d)
    row_site = torch.tensor([used.index(i) for i in site_ids.tolist()])
    sample_acts = at_site[row_site, torch.arange(ids.shape[0])]  # (N, T, d)
    valid = queryable(ids, probed.task.tokenizer.eos_id)
    return best_positions(position_distances(queries.cpu(), sample_acts, valid, metric))[0]


def sequence_log_probs(
    decoder: Decoder, ids: torch.Tensor, activation: torch.Tensor, site_ids: torch.Tensor, eos_id: int
) -> torch.Tensor:
    """Decoder log-probability of each whole sample, EOS included, with gradient: (N,)."""
    targets = next_token_targets(ids, sequence_lengths(ids, eos_id)).to(decoder.device)
    logits = decoder(ids[:, :-1].to(decoder.device), activation, site_ids)  # (N, T-1, vocab)
    token_loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")  # (N, T-1)
    return -token_loss.sum(-1)


def verified_loss(
    decoder: Decoder,
    probed: ProbedModel,
    sites: list[Site],
    activation: torch.Tensor,
    site_ids: torch.Tensor,
    *,
    samples: int,
    epsilon: float,
    metric: str,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, float]:
    """The policy-gradient loss for queries (Q, d) at ``site_ids`` (Q,), ``samples`` each, and the
    share of those samples inside ε."""
    tok = probed.task.tokenizer
    activation = activation.repeat_interleave(samples, dim=0)  # (Q * G, d)
    site_ids = site_ids.repeat_interleave(samples, dim=0)
    with torch.no_grad():
        ids = decoder.generate(
            activation, site_ids, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id, generator=generator
        ).cpu()
        reward = (sample_distances(probed, sites, ids, activation, site_ids, metric) <= epsilon).float()
        group = reward.view(-1, samples)
        advantage = (group - group.mean(dim=1, keepdim=True)).flatten().to(decoder.device)
    taught = advantage != 0
    if not taught.any():
        return activation.new_zeros(()).to(decoder.device), float(reward.mean())
    keep = taught.cpu()
    log_probs = sequence_log_probs(decoder, ids[keep], activation[keep], site_ids[keep], tok.eos_id)
    # Averaged over every sample drawn, so a step's size does not grow as fewer groups are mixed.
    return -(advantage[taught] * log_probs).sum() / len(reward), float(reward.mean())
