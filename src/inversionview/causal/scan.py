"""A patching scan: one (position, component) cell at a time, over many contrast pairs.

Rows are positions: the task's named positions by name, and the rest grouped into one row
("other") so that inputs of different lengths line up. Columns are components: per layer, the
residual stream before it, each head's output, the attention output and the MLP output. Each cell
is the mean effect of patching that component at that position (``causal/patch.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from inversionview.causal.metrics import task_metric
from inversionview.causal.patch import contrast_pairs, patch_batch
from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import HEAD_SITE_KIND, Site, head_sites

OTHER = "other"
"""The row of every text position without a name, patched together."""


@dataclass
class ScanResult:
    positions: list[str]
    components: list[str]
    effect: list[list[float | None]]
    """Mean effect per cell: rows are ``positions``, columns ``components``."""
    n: int

    def to_dict(self) -> dict:
        return {"positions": self.positions, "components": self.components, "effect": self.effect, "n": self.n}


def scan_components(probed: ProbedModel) -> list[str]:
    """Per layer: ``hook_resid_pre``, each head's output, ``hook_attn_out``, ``hook_mlp_out``."""
    names = []
    for layer in range(probed.n_layers):
        names.append(Site(layer, "hook_resid_pre").name)
        names += [Site(layer, HEAD_SITE_KIND, h).name for h in range(probed.n_heads)]
        names += [Site(layer, "hook_attn_out").name, Site(layer, "hook_mlp_out").name]
    return names


def _row_positions(probed: ProbedModel, text: str, row: str) -> list[int]:
    named = probed.task.named_positions(text)
    if row != OTHER:
        return [named[row]]
    kept = set(named.values())
    return [p for p in range(1, len(probed.task.encode(text)) - 1) if p not in kept]


def patch_scan(probed: ProbedModel, n: int, *, components: list[str] | None = None, seed: int = 0) -> ScanResult:
    """The mean effect of patching each component at each position over ``n`` contrast pairs.

    Args:
        n: Contrast pairs.
        components: Sites to scan (default: per layer hook_resid_pre, each head, hook_attn_out, hook_mlp_out).
        seed: Seed of the pairs drawn.
    """
    components = components or scan_components(probed)
    sites = [probed.site(name) for name in components]  # an unknown component fails here, with the list
    pairs = contrast_pairs(probed, n, seed=seed)
    metrics = [task_metric(probed, text, source) for text, source in pairs]
    first = probed.task.named_positions(pairs[0][0])
    rows = [name for name in first if all(name in probed.task.named_positions(t) for t, _ in pairs)]
    if any(_row_positions(probed, text, OTHER) for text, _ in pairs):
        rows.append(OTHER)
    effect = []
    for row in rows:
        positions = [_row_positions(probed, text, row) for text, _ in pairs]
        effect.append([_cell(probed, pairs, metrics, site, positions) for site in sites])
    return ScanResult(rows, components, effect, len(pairs))


ALL_POSITIONS = "all positions"
ORDERS = ("forward", "backward")


def cumulative_scan(probed: ProbedModel, n: int, order: str, *, seed: int = 0) -> ScanResult:
    """Heads patched cumulatively at every text position, in layer order (``forward``) or its reverse
    (``backward``): column k is the effect of patching the first k + 1 heads of that order together."""
    if order not in ORDERS:
        raise UserError(f"`order` {order!r}: use forward or backward")
    heads = head_sites(probed.n_layers, probed.n_heads)
    heads = heads if order == "forward" else heads[::-1]
    pairs = contrast_pairs(probed, n, seed=seed)
    metrics = [task_metric(probed, text, source) for text, source in pairs]
    positions = [range(1, len(probed.task.encode(text)) - 1) for text, _ in pairs]
    row = []
    for k in range(1, len(heads) + 1):
        per_input = [[(head, p) for head in heads[:k] for p in text_positions] for text_positions in positions]
        row.append(_mean(patch_batch(probed, pairs, per_input, metrics).mean_effect))
    labels = [("+ " if k else "") + head.name for k, head in enumerate(heads)]
    return ScanResult([ALL_POSITIONS], labels, [row], len(pairs))


def _mean(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _cell(probed, pairs, metrics, site: Site, positions: list[list[int]]) -> float | None:
    """Mean effect of patching ``site`` at each input's ``positions`` (inputs with none are left out)."""
    kept = [i for i, p in enumerate(positions) if p]
    per_input = [[(site, position) for position in positions[i]] for i in kept]
    return _mean(patch_batch(probed, [pairs[i] for i in kept], per_input, [metrics[i] for i in kept]).mean_effect)
