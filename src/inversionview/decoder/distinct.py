"""Sampling without replacement: k different sequences from a decoder, for one activation.

Plain sampling repeats itself: where a preimage is small or the decoder is sure, most of 10,000
samples are copies of a few inputs. Stochastic beam search (Kool, van Hoof and Welling, "Stochastic
Beams and Where to Find Them", ICML 2019) draws k distinct sequences instead, exactly as if
sequences were drawn one at a time and each drawn one removed from the distribution: every
sequence's log-probability is perturbed by Gumbel noise, and the beam keeps the k prefixes whose best
completion has the largest perturbed score (a prefix's score is the maximum over its subtree, sampled
top-down by conditioning each child's Gumbel on its parent's). The rows come out in decreasing
perturbed score, so the first m rows are themselves a sample of m without replacement.

At temperature 0 there is no noise and this is plain beam search: the k most likely sequences (as far
as a beam of width k finds them).
"""

from __future__ import annotations

import torch

from inversionview.decoder.model import Decoder, mask_unwritable


def gumbel(shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel noise, drawn on the CPU so a seeded CPU generator reproduces it anywhere."""
    uniform = torch.rand(shape, generator=generator).clamp(1e-12, 1 - 1e-7)
    return -torch.log(-torch.log(uniform))


def condition_on_maximum(parent: torch.Tensor, children: torch.Tensor) -> torch.Tensor:
    """Children's Gumbel scores (B, V), redrawn so that their maximum equals the parent's (B,).

    Kool et al., appendix B, in the numerically stable form; -inf children stay -inf.
    """
    top = children.max(-1, keepdim=True).values
    gap = children - top  # <= 0
    # log(1 - exp(gap)), accurate both near 0 and far below it
    log1mexp = torch.where(gap > -0.6931, torch.log(-torch.expm1(gap)), torch.log1p(-torch.exp(gap)))
    v = parent[:, None] - children + log1mexp
    return parent[:, None] - v.clamp_min(0) - torch.log1p(torch.exp(-v.abs()))


SCORES_AT_ONCE = 1 << 22
"""Children (beam rows × vocabulary) scored in one slice: each float32 tensor of a slice is 16 MB,
so a 50k-token vocabulary at k = 10,000 beams is scored 83 rows at a time instead of all at once."""


@torch.no_grad()
def sample_distinct(
    decoder: Decoder,
    activation: torch.Tensor,
    site: int,
    k: int,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    scores_at_once: int = SCORES_AT_ONCE,
) -> torch.Tensor:
    """Up to ``k`` distinct sequences for one activation (d_act,): ids (k, max_len), BOS first, EOS
    last, PAD after it, in the order they would have been drawn (fewer rows only if the decoder can
    write fewer than ``k`` sequences).

    Each step's children are scored ``scores_at_once`` at a time (whole beam rows); the draw does not
    depend on it, since the noise is drawn row after row either way."""
    device = decoder.device
    max_len, vocab = decoder.config.max_len, decoder.config.vocab_size
    rows_at_once = max(1, scores_at_once // vocab)
    state = decoder.start(activation.float().to(device)[None], torch.tensor([site], device=device))
    ids = torch.full((1, max_len), pad_id, dtype=torch.long, device=device)
    ids[:, 0] = bos_id
    log_prob = torch.zeros(1, device=device)  # each beam's log-probability so far (at this temperature)
    score = torch.zeros(1, device=device)  # each beam's perturbed score: the root's is arbitrary, 0
    finished = torch.zeros(1, dtype=torch.bool, device=device)
    draw = {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id, "temperature": temperature}
    for pos in range(max_len - 1):
        features = decoder.step_features(state, ids[:, pos], pos)  # (B, d)
        beams = (log_prob, score, finished)
        read = (features, state.match)
        score, index, log_prob = _best_children(decoder, read, beams, k, pos, rows_at_once, draw, generator)
        parent, token = index // vocab, index % vocab
        state.select(parent)
        ids = ids[parent]
        ids[:, pos + 1] = token
        finished = finished[parent] | (token == eos_id)
        if finished.all():
            break
    return ids.cpu()


def _best_children(
    decoder: Decoder,
    read: tuple[torch.Tensor, torch.Tensor | None],
    beams: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    k: int,
    pos: int,
    rows_at_once: int,
    draw: dict,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` children with the best perturbed scores over all beams' next tokens, in draw
    order: (scores, flat indices parent * vocab + token, log-probabilities), each (<= k,).

    ``read`` is what the read-out takes for each beam: its features and its match scores (None for
    a decoder without ``token_match``). ``beams`` is each beam's (log-probability, perturbed score,
    finished); its children are scored
    ``rows_at_once`` beams at a time, re-ranked after each slice so that at most 2k are held."""
    features, match = read
    log_prob, score, finished = beams
    vocab, max_len, device = decoder.config.vocab_size, decoder.config.max_len, features.device
    specials = {name: draw[name] for name in ("bos_id", "eos_id", "pad_id")}
    score_kept = torch.empty(0, device=device)
    index_kept = torch.empty(0, dtype=torch.long, device=device)
    log_prob_kept = torch.empty(0, device=device)
    for first in range(0, features.shape[0], rows_at_once):
        rows = slice(first, first + rows_at_once)
        logits = mask_unwritable(decoder.read_out(features[rows], None if match is None else match[rows]), **specials)
        child_log_prob, child_score = _score_children(
            logits,
            log_prob[rows],
            score[rows],
            finished[rows],
            pos == max_len - 2,
            draw["eos_id"],
            draw["pad_id"],
            draw["temperature"],
            generator,
        )
        flat = child_score.flatten()
        top, index = flat.topk(min(k, int(torch.isfinite(flat).sum())))
        score_kept = torch.cat([score_kept, top])
        index_kept = torch.cat([index_kept, index + first * vocab])
        log_prob_kept = torch.cat([log_prob_kept, child_log_prob.flatten()[index]])
        if first > 0:  # a later slice: re-rank, so that at most 2k candidates are ever held
            best = score_kept.topk(min(k, score_kept.numel())).indices  # sorted: the beam stays in draw order
            score_kept, index_kept, log_prob_kept = score_kept[best], index_kept[best], log_prob_kept[best]
    return score_kept, index_kept, log_prob_kept


def _score_children(
    logits: torch.Tensor,
    log_prob: torch.Tensor,
    score: torch.Tensor,
    finished: torch.Tensor,
    last_slot: bool,
    eos_id: int,
    pad_id: int,
    temperature: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For beams (B,) and their next-token ``logits`` (B, V): each child's log-probability and its
    perturbed score (the log-probability itself at temperature 0), both (B, V)."""
    if last_slot:  # the last slot can only end the sequence
        logits[:, :] = float("-inf")
        logits[:, eos_id] = 0.0
    child = (logits / (temperature or 1.0)).log_softmax(-1)
    # A finished sequence has one continuation, PAD, which changes nothing.
    child[finished] = float("-inf")
    child[finished, pad_id] = 0.0
    child_log_prob = log_prob[:, None] + child
    if temperature == 0:
        return child_log_prob, child_log_prob
    perturbed = child_log_prob + gumbel(child_log_prob.shape, generator).to(logits.device)
    return child_log_prob, condition_on_maximum(score, perturbed)
