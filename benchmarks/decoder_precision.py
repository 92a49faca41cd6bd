"""Per-site precision of a decoder on held-out queries: the share of T=1 samples inside ε.

    python benchmarks/decoder_precision.py [--probed counting] [--decoder DIR] [--queries 40] [--samples 50]
                                           [--seed 2024] [--positions named|random] [--temperature 1]
                                           [--by-position] [--corpus FILE --max-tokens N] [--sites A,B]

Queries are held-out inputs at the task's named query positions, in turn (counting: the query letter
and ``:``; IOI: S1, S1+1, IO, S2, END), or with ``--positions random`` at any text position.
Metric and ε are the probed model's unless given. A free-text model (``--probed minilm``) reads
held-out lines of ``--corpus`` (one line in ten is held out), at random positions.
Prints one line per site, then the mean (with its standard error over the queries: every site reads
the same queries, so the error is that of the per-query means over sites) and the minimum.
``--by-position`` adds each site's precision at each named position (the queries there), which shows
where within a site the decoder misses.
"""

from __future__ import annotations

import argparse
import time

import torch

from inversionview.decoder.evaluate import decoder_precision, query_position_name
from inversionview.decoder.store import load_decoder
from inversionview.probed import load_probed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probed", default="counting")
    parser.add_argument("--decoder", default=None)
    parser.add_argument("--queries", type=int, default=40, help="held-out queries per site")
    parser.add_argument("--samples", type=int, default=50, help="T=1 samples per query")
    parser.add_argument("--epsilon", type=float, help="default: the probed model's (0.1 unless it says)")
    parser.add_argument("--metric", help="default: the probed model's (euclidean unless it says)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 is greedy (use --samples 1)")
    parser.add_argument(
        "--positions",
        choices=("named", "random"),
        default="named",
        help="query positions: the task's named ones, or any",
    )
    parser.add_argument(
        "--by-position", action="store_true", help="also print a site × named position table of precision"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--corpus", help="free-text models: the corpus whose held-out lines are the queries")
    parser.add_argument("--max-tokens", type=int, help="free-text models: the longest input, as in training")
    parser.add_argument("--sites", help="comma-separated sites to measure (default: every site the decoder serves)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    probed = load_probed(args.probed)
    if args.corpus:
        probed.use_corpus(args.corpus, max_len=args.max_tokens)
    decoder = load_decoder(args.decoder, probed)
    metric, epsilon = probed.distance_settings(args.metric, args.epsilon)
    started = time.perf_counter()
    print(
        f"{'site':32s} precision  (T={args.temperature:g}, {metric}, ε={epsilon}, "
        f"{args.queries} queries × {args.samples} samples, {args.positions} positions)"
    )
    result = decoder_precision(
        decoder,
        probed,
        queries=args.queries,
        samples=args.samples,
        seed=args.seed,
        positions=args.positions,
        temperature=args.temperature,
        metric=metric,
        epsilon=epsilon,
        sites=args.sites.split(",") if args.sites else None,
    )
    for site, precision in result.by_site.items():
        print(f"{site:32s} {precision:8.1%}")
    print(f"{'mean':32s} {result.mean:8.1%}  ± {result.standard_error:.1%} (standard error over queries)")
    site, lowest = result.lowest
    print(f"{'min':32s} {lowest:8.1%}  ({site})")
    if args.by_position:
        print_by_position(probed, result.queries, dict(zip(result.by_site, result.per_query)))
    print(f"[{time.perf_counter() - started:.0f} s]")


def print_by_position(probed, queries: list[tuple[str, int]], per_query: dict[str, torch.Tensor]) -> None:
    """Each site's precision over the queries at each named position, with the queries per column."""
    names = [query_position_name(probed, text, position) or "other" for text, position in queries]
    columns = [n for n in [*probed.task.query_position_names(), "other"] if n in names]
    widths = [max(5, len(c)) for c in columns]
    print()
    print(f"{'site':32s} " + " ".join(f"{c:>{w}s}" for c, w in zip(columns, widths)))
    print(f"{'(queries)':32s} " + " ".join(f"{names.count(c):{w}d}" for c, w in zip(columns, widths)))
    for site, row in per_query.items():
        cells = [float(row[[n == c for n in names]].mean()) for c in columns]
        print(f"{site:32s} " + " ".join(f"{cell:{w}.0%}" for cell, w in zip(cells, widths)))


if __name__ == "__main__":
    main()
