"""The per-site story of a case study: at every site and named position, which features the readings
of held-out queries keep (the share of queries whose verdict is "encoded")."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from inversionview.decoder.build import decoder_sites
from inversionview.decoder.model import Decoder
from inversionview.errors import UserError
from inversionview.interpret.explain import feature_verdicts
from inversionview.inversion.invert import invert
from inversionview.probed.model import ProbedModel


@dataclass
class ExplainMap:
    sites: list[str]
    positions: list[str]
    encoded: list[list[dict[str, float]]]
    """Rows are sites, columns positions; each cell maps a feature to the share of queries that keep
    it (only features kept by some query)."""
    n: int

    def to_dict(self) -> dict:
        return {"sites": self.sites, "positions": self.positions, "encoded": self.encoded, "n": self.n}


def explain_map(
    probed: ProbedModel,
    decoder: Decoder,
    n: int,
    *,
    samples: int = 200,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ExplainMap:
    """``n`` held-out queries read at every site and every named position, each explained.

    Args:
        n: Held-out queries per site and position.
        samples: Samples a reading.
        seed: Seed of the queries and their readings.
    """
    if n < 1:
        raise UserError(f"`n` must be at least 1, got {n}")
    names = probed.task.query_position_names()
    if not names:
        raise UserError(f"the {probed.task.name} task names no positions; explain-map reads at named positions")
    texts = probed.task.sample_texts(random.Random(seed), n, split="heldout")
    sites = [site.name for site in decoder_sites(probed, decoder.config.sites)]
    grid, done = [], 0
    for site in sites:
        row = []
        for name in names:
            kept: dict[str, int] = {}
            present = [t for t in texts if name in probed.task.named_positions(t)]
            for text in present:
                at = probed.task.named_positions(text)[name]
                result = invert(
                    probed, decoder, text, at, site, samples=samples, seed=seed, find_boundary=False, inclusion=True
                )
                for verdict in feature_verdicts(probed, decoder, result, seed=seed):
                    kept[verdict.name] = kept.get(verdict.name, 0) + (verdict.verdict == "encoded")
            row.append({f: round(k / len(present), 3) for f, k in kept.items() if k} if present else {})
            done += 1
            if progress:
                progress(done, len(sites) * len(names))
        grid.append(row)
    return ExplainMap(sites, names, grid, n)
