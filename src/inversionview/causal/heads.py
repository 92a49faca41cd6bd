"""Which attention heads make up the residual stream at the answer position: the paper's way of
finding the heads of factual recall, beside the heads that patching finds.

For a head h of layer l and the residual stream r after that layer's attention (``hook_resid_mid``),
at the position that predicts the answer, the proximity is ‖r‖₁ − ‖h − r‖₁: large when the head's
output alone comes close to the whole stream. Normalised over the heads of the layer (negative
proximities count as 0), a head's share is counted when it passes ``threshold``; ``share`` is the
fraction of prompts where it does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from inversionview.causal.scan import patch_scan
from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site, head_sites

TOP = 10
"""How many heads of each ranking the rank agreement compares."""


@dataclass
class HeadShare:
    heads: list[str]
    share: list[float]
    """Per head: the fraction of prompts where its normalised proximity passes the threshold."""
    patch_effect: list[float | None] | None
    """Per head: the mean effect of patching it at the answer position (None: the task has no contrasts)."""
    rank_agreement: dict[str, float | None] | None
    n: int

    def to_dict(self) -> dict:
        return {
            "heads": self.heads,
            "share": self.share,
            "patch_effect": self.patch_effect,
            "rank_agreement": self.rank_agreement,
            "n": self.n,
        }


def answer_position(probed: ProbedModel, text: str) -> int:
    """The position that predicts the answer: the task's ``END`` if it names one, else the last token."""
    return probed.task.named_positions(text).get("END", len(probed.task.encode(text)) - 2)


@torch.no_grad()
def normalised_proximity(probed: ProbedModel, texts: list[str]) -> torch.Tensor:
    """(n, layers, heads): each head's proximity to ``hook_resid_mid`` at the answer position,
    normalised over the heads of its layer."""
    heads = head_sites(probed.n_layers, probed.n_heads)
    mids = [Site(layer, "hook_resid_mid") for layer in range(probed.n_layers)]
    ids, _ = probed.encode_batch(texts)
    acts, _ = probed.activations(ids, heads + mids)
    at = torch.tensor([answer_position(probed, t) for t in texts])
    rows = torch.arange(len(texts))
    out = torch.zeros(len(texts), probed.n_layers, probed.n_heads)
    for site in heads:
        mid = acts[Site(site.layer, "hook_resid_mid")][rows, at].float()
        head = acts[site][rows, at].float()
        out[:, site.layer, site.head] = mid.abs().sum(-1) - (head - mid).abs().sum(-1)
    positive = out.clamp(min=0)
    return positive / positive.sum(-1, keepdim=True).clamp(min=1e-12)


def head_share(probed: ProbedModel, n: int, *, threshold: float = 0.3, seed: int = 0) -> HeadShare:
    """Each head's share over ``n`` held-out prompts, its patching effect at the answer position,
    and how well the two rankings agree over their top heads.

    Args:
        n: Held-out prompts.
        threshold: Share of its layer a head's output must pass to count at a prompt.
        seed: Seed of the prompts drawn.
    """
    if n < 1:
        raise UserError(f"`n` must be at least 1, got {n}")
    if not 0 < threshold < 1:
        raise UserError(f"`threshold` must lie between 0 and 1, got {threshold}")
    if probed.is_encoder:
        raise UserError("head-share reads a causal LM's answer position; this model is an encoder")
    texts = probed.task.sample_texts(random.Random(seed), n, split="heldout")
    for text in texts:
        probed.task.validate(text)
    share = (normalised_proximity(probed, texts) > threshold).float().mean(0).flatten()
    names = [site.name for site in head_sites(probed.n_layers, probed.n_heads)]
    effect = _patch_effects(probed, n, names, seed)
    agreement = None if effect is None else rank_agreement(share.tolist(), effect)
    return HeadShare(names, [round(s, 4) for s in share.tolist()], effect, agreement, n)


def _patch_effects(probed: ProbedModel, n: int, names: list[str], seed: int) -> list[float | None] | None:
    try:
        scan = patch_scan(probed, n, components=names, seed=seed)
    except UserError:  # no contrast inputs, no patching effect to rank by
        return None
    row = scan.positions.index("END") if "END" in scan.positions else None
    return scan.effect[row] if row is not None else None


def rank_agreement(share: list[float], effect: list[float | None]) -> dict[str, float | None]:
    """How many of the top heads by share are also top by patching effect, and the Spearman rank
    correlation of the two measures over the heads in either top list."""
    effect_values = [e if e is not None else float("-inf") for e in effect]
    top_share = sorted(range(len(share)), key=lambda i: -share[i])[:TOP]
    top_effect = sorted(range(len(share)), key=lambda i: -effect_values[i])[:TOP]
    union = sorted(set(top_share) | set(top_effect))
    return {
        "top_overlap": round(len(set(top_share) & set(top_effect)) / min(TOP, len(share)), 4),
        "spearman": _spearman([share[i] for i in union], [effect_values[i] for i in union]),
    }


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    scale = float((ra.square().sum() * rb.square().sum()).sqrt())
    return round(float((ra * rb).sum()) / scale, 4) if scale > 0 else None


def _ranks(values: list[float]) -> torch.Tensor:
    """Ranks with ties given their mean rank."""
    x = torch.tensor(values, dtype=torch.float64).nan_to_num(neginf=-1e300)
    order = x.argsort()
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    for value in x.unique():
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks
