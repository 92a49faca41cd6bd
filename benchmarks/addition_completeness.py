"""Decoder completeness against the exact preimage, over a seeded set of addition queries.

    python benchmarks/addition_completeness.py [--queries 22] [--samples 10000] [--decoder DIR] [--schedule distinct]

Queries are held-out inputs at positions and sites drawn with a fixed seed, spread so that every
site and every named position appears. For each query it prints the exact preimage size, the
decoder's precision and its recall after 100, 1,000, 10,000 samples; then per-site means, and the
mean recall at 10,000 over queries whose true preimage has 2 to 5,000 members.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

import torch

from inversionview.decoder.store import load_decoder
from inversionview.exact.completeness import completeness, spread_queries
from inversionview.exact.preimage import exact_preimages
from inversionview.inversion.schedule import parse_schedule
from inversionview.probed import load_probed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probed", default="addition")
    parser.add_argument("--decoder", default=None)
    parser.add_argument("--queries", type=int, default=22)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--schedule", default="auto")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    probed = load_probed(args.probed)
    decoder = load_decoder(args.decoder, probed)
    queries = spread_queries(probed, args.queries, args.seed)
    exacts = exact_preimages(probed, queries, limit=0)  # one pass over the space serves every query
    print(f"exact preimages of {len(queries)} queries: {exacts[0].seconds:.1f} s in one pass")
    per_site = defaultdict(list)
    mid_recall = []
    key = str(args.samples)
    print(f"{'input':14s} {'pos':>3s} {'site':28s} {'members':>8s} {'prec':>6s} {'r@100':>6s} {'r@1k':>6s} {'r@N':>6s}")
    for i, ((text, position, site), exact) in enumerate(zip(queries, exacts, strict=True)):
        result = completeness(
            probed,
            decoder,
            text,
            position,
            site,
            samples=args.samples,
            seed=args.seed + i,
            schedule=parse_schedule(args.schedule, args.temperature),
            exact=exact,
        )
        recall = result.recall
        print(
            f"{text:14s} {position:3d} {site:28s} {result.n_members:8d} {result.precision:6.1%} "
            f"{recall.get('100', 0):6.1%} {recall.get('1000', 0):6.1%} {recall[key]:6.1%}",
            flush=True,
        )
        per_site[site].append(result.precision)
        if 2 <= result.n_members <= 5000:
            mid_recall.append(recall[key])
    print("\nper-site precision (mean over its queries):")
    for name, values in per_site.items():
        print(f"  {name:28s} {statistics.mean(values):6.1%}  ({len(values)} queries)")
    print(f"mean precision over sites: {statistics.mean(statistics.mean(v) for v in per_site.values()):.1%}")
    if mid_recall:
        print(
            f"mean recall@{key} over {len(mid_recall)} queries with 2-5,000 members: {statistics.mean(mid_recall):.1%}"
        )


if __name__ == "__main__":
    main()
