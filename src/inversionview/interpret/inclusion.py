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
from inversionview.decoder.sampling import draw_chances, log_probs_at_temperatures, site_index
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
    include it at least once: as the reading found it (``Sample.inclusion``, from the pass that
    coloured its tokens), else from a decoder pass over the members."""
    known = {s.text: s.inclusion for s in result.samples if s.inclusion is not None}
    unknown = [m for m in members if m not in known]
    found = dict(zip(unknown, _scored(probed, decoder, result, unknown))) if unknown else {}
    return [known[m] if m in known else found[m] for m in members]


def _scored(probed: ProbedModel, decoder: Decoder, result: InversionResult, members: list[str]) -> list[float]:
    """``inclusion_chances`` from a decoder pass over ``members``, in batches."""
    settings, query = result.settings, result.query
    site = probed.site(query.site)
    activation = query_activation(probed, site, query.text, query.position)
    schedule = Schedule(tuple(map(tuple, settings.schedule_pairs)), settings.schedule)
    temperatures, counts = schedule.draw_counts(settings.samples)
    eos, sid = probed.task.tokenizer.eos_id, site_index(decoder, site)
    chances = []
    longest = decoder.config.max_len
    for start in range(0, len(members), BATCH):
        ids, lengths = probed.encode_batch(members[start : start + BATCH])
        ids = ids[:, :longest]
        chance = draw_chances(log_probs_at_temperatures(decoder, ids, activation, sid, eos, temperatures), counts)
        # A text a subword tokenizer spells in more tokens than the decoder writes (its samples need
        # not be the canonical spelling) cannot be scored: it counts once, as if drawn surely.
        chances.extend(torch.where(lengths > longest, 1.0, chance).tolist())
    return chances
