"""The completeness scatter: does the decoder favour exactly the inputs near the query?"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import BinaryIO

import torch

from inversionview.causal.heads import HeadShare
from inversionview.causal.scan import ScanResult
from inversionview.decoder.model import Decoder
from inversionview.decoder.sampling import query_log_probs
from inversionview.exact.completeness import Completeness
from inversionview.interpret.explain_map import ExplainMap
from inversionview.paths import plot_file
from inversionview.probed.model import ProbedModel
from inversionview.probed.verify import query_activation


def scan_heatmap(scan: ScanResult, path: Path | BinaryIO, title: str) -> None:
    """The patching scan as a labelled heatmap, written as PNG to a path or a binary file: positions
    down, components across, the mean effect in each cell (blank where it is undefined)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if isinstance(path, Path):
        plot_file(path)
    grid = np.array([[np.nan if v is None else v for v in row] for row in scan.effect], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(scan.components), 1.4 + 0.42 * len(scan.positions)), dpi=110)
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(
        range(len(scan.components)),
        [c.replace("blocks.", "").replace("attn.hook_result", "head") for c in scan.components],
        rotation=60,
        ha="right",
        fontsize=8,
    )
    ax.set_yticks(range(len(scan.positions)), scan.positions, fontsize=8)
    for (row, column), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(
                column,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if abs(value) > 0.6 else "black",
            )
    fig.colorbar(image, ax=ax, label="mean effect (1: as the source)")
    ax.set_title(f"{title} (n = {scan.n})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def scan_figure(probed: ProbedModel, n: int, seed: int) -> tuple[bytes, str]:
    """A patching scan over ``n`` contrast pairs, as a PNG heatmap and its caption (for the report)."""
    import io

    from inversionview.causal.scan import patch_scan

    scan, png = patch_scan(probed, n, seed=seed), io.BytesIO()
    scan_heatmap(scan, png, f"patching scan of {probed.source}")
    return png.getvalue(), f"mean effect of patching each component at each position, over {n} contrast pairs"


def explain_map_figure(table: ExplainMap, path: Path, title: str, threshold: float = 0.5) -> None:
    """The explain-map as a grid, sites down and named positions across: each cell lists the
    features at least ``threshold`` of the queries keep, shaded by how many there are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_file(path)
    kept = [[[f for f, share in cell.items() if share >= threshold] for cell in row] for row in table.encoded]
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(table.positions), 1.0 + 0.42 * len(table.sites)), dpi=110)
    ax.imshow([[len(cell) for cell in row] for row in kept], cmap="Greens", aspect="auto", vmin=0, vmax=4)
    for r, row in enumerate(kept):
        for c, cell in enumerate(row):
            ax.text(c, r, "\n".join(cell) if len(cell) < 4 else ", ".join(cell), ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(table.positions)), table.positions, fontsize=8)
    ax.set_yticks(range(len(table.sites)), [s.replace("blocks.", "") for s in table.sites], fontsize=7)
    heading = f"{title}: features kept by ≥ {threshold:.0%} of {table.n} queries"
    # Wrapped to the figure's width (about 12 characters an inch at 9 pt), so a narrow map keeps it whole.
    ax.set_title(textwrap.fill(heading, width=max(20, int(12 * fig.get_figwidth()))), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def completeness_scatter(
    probed: ProbedModel, decoder: Decoder, result: Completeness, path: Path, *, max_points: int = 100_000, seed: int = 0
) -> float:
    """Draw, for inputs of the space, the decoder's log-probability of generating each given the
    query against its distance to the query, with ε marked. Every member is drawn; other inputs are
    a seeded sample of at most ``max_points``. Returns the seconds it took.

    Args:
        max_points: Inputs drawn in the scatter, members always.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    started = time.perf_counter()
    plot_file(path)
    exact = result.exact
    space = exact.input_space  # the space the preimage was computed over
    distances = exact.distances
    members = torch.nonzero(exact.ball.contains(distances))[:, 0]
    generator = torch.Generator().manual_seed(seed)
    others = torch.randperm(space.size, generator=generator)[:max_points]
    chosen = torch.unique(torch.cat([members, others]))
    site = probed.site(exact.site)
    query = query_activation(probed, site, exact.query_text, exact.position)
    log_probs = query_log_probs(decoder, probed, space.ids[chosen], query, site)
    dist = distances[chosen]
    inside = exact.ball.contains(dist)

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    ax.scatter(dist[~inside], log_probs[~inside], s=2, alpha=0.25, color="#7f7f7f", label="outside ε", rasterized=True)
    ax.scatter(dist[inside], log_probs[inside], s=6, alpha=0.8, color="#d62728", label=f"inside ε ({len(members):,})")
    ax.axvline(exact.epsilon, color="#1f77b4", linestyle="--", linewidth=1.2, label=f"ε = {exact.epsilon:g}")
    ax.set_xlabel(f"distance to the query ({exact.metric}, best position)")
    ax.set_ylabel("decoder log p(input | query)")
    drawn = "all inputs" if len(chosen) == space.size else f"{len(chosen):,} of {space.size:,} inputs (all members)"
    ax.set_title(f"{exact.query_text!r} @ {exact.position}, {exact.site}\n{drawn}", fontsize=9)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return round(time.perf_counter() - started, 3)


def head_share_figure(result: HeadShare, n_layers: int, path: Path, title: str) -> None:
    """Two layer × head grids side by side: each head's share of the residual stream at the answer
    position, and its patching effect there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plot_file(path)
    panels = [("share of the residual stream", result.share, "viridis", (0, 1))]
    if result.patch_effect is not None:
        panels.append(("patching effect", result.patch_effect, "RdBu_r", (-1, 1)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), dpi=110, squeeze=False)
    for ax, (label, values, cmap, (low, high)) in zip(axes[0], panels):
        grid = np.array([np.nan if v is None else v for v in values], dtype=float).reshape(n_layers, -1)
        image = ax.imshow(grid, cmap=cmap, vmin=low, vmax=high, aspect="auto")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(label, fontsize=9)
        fig.colorbar(image, ax=ax)
    fig.suptitle(f"{title} (n = {result.n})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
