"""How likely each member of a reading's preimage was to be among its samples at all.

A decoder draws the likelier members of a preimage more often, and the likelier members share more
than the whole preimage does. Counting each distinct member by the inverse of its chance of being
drawn (Horvitz–Thompson) undoes that: a member drawn almost surely counts once, a rare one stands
for the many like it that were not drawn. The chance is 1 − ∏ (1 − q_k)^{n_k} over the reading's
schedule, q_k the decoder's probability of the member at the k-th pair's temperature and n_k the
samples drawn at it (activation noise left out).
"""

from __future__ import annotations

import torch

from inversionview.decoder.model import Decoder
from inversionview.decoder.sampling import log_probs_at_temperatures, site_index
from inversionview.decoder.schedule import Schedule
from inversionview.inversion.result import InversionResult
from inversionview.probed.model import ProbedModel
from inversionview.probed.verify import query_activation

BATCH = 64
"""Members scored a decoder pass: their logits, (BATCH, T, vocab), stay small for a 50k vocabulary."""


@torch.no_grad()
def inclusion_chances(
    probed: ProbedModel, decoder: Decoder, result: InversionResult, members: list[str]
) -> list[float]:
    """For each of ``members`` (texts inside ε), the chance that the reading's scheduled draws
    include it at least once."""
    settings, query = result.settings, result.query
    site = probed.site(query.site)
    activation = query_activation(probed, site, query.text, query.position)
    schedule = Schedule(tuple(map(tuple, settings.schedule_pairs)), settings.schedule)
    split = schedule.split(settings.samples)
    temperatures, counts = [t for t, _, _ in split], torch.tensor([[n] for _, _, n in split], dtype=torch.float)
    eos, sid = probed.task.tokenizer.eos_id, site_index(decoder, site)
    chances = []
    longest = decoder.config.max_len
    for start in range(0, len(members), BATCH):
        ids, lengths = probed.encode_batch(members[start : start + BATCH])
        ids = ids[:, :longest]
        drawn = log_probs_at_temperatures(decoder, ids, activation, sid, eos, temperatures).exp()  # (K, N)
        never = (counts * torch.log1p(-drawn.clamp(max=1 - 1e-12))).sum(0)  # log of no draw giving it, (N,)
        chance = (-torch.expm1(never)).clamp_min(1e-12)
        # A text a subword tokenizer spells in more tokens than the decoder writes (its samples need
        # not be the canonical spelling) cannot be scored: it counts once, as if drawn surely.
        chances.extend(torch.where(lengths > longest, 1.0, chance).tolist())
    return chances
