"""Relative euclidean, cosine and whitened distance on addition's exact preimages.

    python benchmarks/distance_geometry.py [--queries 24] [--seed 0] [--json] [--plot FILE.png]

The same seeded held-out queries, spread over every site and named position (``spread_queries``),
get their exact ε-preimage under each metric from one brute-force pass over the 810,000 inputs per
metric. Euclidean keeps ε = 0.1; each other metric's ε is set so that its median preimage size
matches euclidean's (bisection on the distances), so that the metrics are compared at the same
coarseness. Prints, per metric, its ε and the spread of preimage sizes, and per feature
(``Task.features``: digits, column sums, carries…) the share of queries whose preimage keeps it
(verdict "encoded", as ``invert --explain`` judges it, over all members).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from inversionview.exact.completeness import spread_queries
from inversionview.exact.preimage import exact_preimages
from inversionview.exact.space import input_space
from inversionview.interpret.explain import verdicts_over
from inversionview.probed import load_probed
from inversionview.probed.metric import METRICS

REFERENCE_EPSILON = 0.1


def matching_epsilon(distances: torch.Tensor, target: float) -> float:
    """The ε at which the median over queries of the preimage size, (distances <= ε).sum(1), is
    ``target``: bisection, as the median size only grows with ε. ``distances`` is (Q, space)."""
    low, high = 0.0, float(distances[torch.isfinite(distances)].max())
    for _ in range(40):
        middle = (low + high) / 2
        if (distances <= middle).sum(1).float().median() < target:
            low = middle
        else:
            high = middle
    return high


def kept_features(probed, query, members: list[str]) -> set[str]:
    text, position, _ = query
    return {v.name for v in verdicts_over(probed, members, text, position, exact=True) if v.verdict == "encoded"}


def measure(probed, queries, texts) -> dict:
    """Per metric: ε, preimage sizes per query, and per feature the share of queries keeping it."""
    distances = {}
    for metric in METRICS:
        results = exact_preimages(probed, queries, metric=metric, epsilon=REFERENCE_EPSILON, limit=0)
        distances[metric] = torch.stack([r.distances for r in results])  # (Q, space)
    target = float((distances["euclidean"] <= REFERENCE_EPSILON).sum(1).float().median())
    figures = {}
    for metric, matrix in distances.items():
        epsilon = REFERENCE_EPSILON if metric == "euclidean" else matching_epsilon(matrix, target)
        sizes, kept = [], {}
        for query, row in zip(queries, matrix):
            inside = torch.nonzero(row <= epsilon)[:, 0].tolist()
            sizes.append(len(inside))
            for name in kept_features(probed, query, [texts[i] for i in inside]) if inside else ():
                kept[name] = kept.get(name, 0) + 1
        share = {name: round(count / len(queries), 3) for name, count in sorted(kept.items())}
        figures[metric] = {"epsilon": round(epsilon, 5), "sizes": sizes, "kept": share}
    return figures


def plot(figures: dict, names: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(1, 1.6))
    for metric, data in figures.items():
        left.plot(sorted(max(s, 1) for s in data["sizes"]), marker="o", label=f"{metric} (ε = {data['epsilon']:.3g})")
    left.set(yscale="log", xlabel="queries, by preimage size", ylabel="exact preimage size (of 810,000)")
    left.legend(fontsize=8)
    width = 0.8 / len(figures)
    for i, (metric, data) in enumerate(figures.items()):
        xs = [j + i * width for j in range(len(names))]
        right.bar(xs, [data["kept"].get(n, 0) for n in names], width, label=metric)
    right.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=60, fontsize=8)
    right.set(ylabel="share of queries whose preimage keeps it", ylim=(0, 1))
    right.legend(fontsize=8)
    fig.suptitle("addition: the same queries under three distances, ε set to match the median preimage size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", help="write the figure to this PNG")
    args = parser.parse_args()
    started = time.perf_counter()
    probed = load_probed("addition")
    queries = spread_queries(probed, args.queries, seed=args.seed)
    figures = measure(probed, queries, input_space(probed.task).texts)
    names = list(probed.task.features())
    if args.plot:
        plot(figures, names, args.plot)
    if args.json:
        print(json.dumps(figures))
        return
    for metric, data in figures.items():
        sizes = data["sizes"]
        print(
            f"{metric:10s} ε {data['epsilon']:.4f}  size median {statistics.median(sizes):,.0f}  "
            f"min {min(sizes):,}  max {max(sizes):,}"
        )
    print("feature".ljust(12) + "".join(m.rjust(11) for m in figures))
    for name in names:
        print(name.ljust(12) + "".join(f"{figures[m]['kept'].get(name, 0):11.2f}" for m in figures))
    print(f"[{time.perf_counter() - started:.0f} s]")


if __name__ == "__main__":
    main()
