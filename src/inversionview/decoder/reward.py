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

from inversionview.decoder.model import Decoder
from inversionview.decoder.sampling import sequence_log_probs
from inversionview.probed.distance import EpsilonBall
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site
from inversionview.probed.verify import verify_at_sites


def reward_loss(
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
        reward = verify_at_sites(probed, sites, ids, activation, site_ids, EpsilonBall(metric, epsilon)).inside.float()
        group = reward.view(-1, samples)
        advantage = (group - group.mean(dim=1, keepdim=True)).flatten().to(decoder.device)
    taught = advantage != 0
    if not taught.any():
        return activation.new_zeros(()).to(decoder.device), float(reward.mean())
    keep = taught.cpu()
    log_probs = sequence_log_probs(decoder, ids[keep], activation[keep], site_ids[keep], tok.eos_id)
    # Averaged over every sample drawn, so a step's size does not grow as fewer groups are mixed.
    return -(advantage[taught] * log_probs).sum() / len(reward), float(reward.mean())
