"""Decoder completeness against the exact preimage, over a seeded set of addition queries.

    python benchmarks/addition_completeness.py [--queries 22] [--samples 10000] [--decoder DIR] [--schedule distinct]
                                               [--refine R]

Queries are held-out inputs at positions and sites drawn with a fixed seed, spread so that every
site and every named position appears. For each query it prints the exact preimage size, the
decoder's precision and its recall after 100, 1,000, 10,000 samples; then per-site means, and the
mean recall at 10,000 over queries whose true preimage has 2 to 5,000 members.

With ``--refine R`` it also spends the same number of probed-model evaluations as plain sampling
spends samples (``--samples``) two more ways, side by side: drawing with an evaluation cache (an
input drawn again costs nothing), and the cache plus refinement: once a batch of draws is dry (under
2 % of it inputs not run before) and once the draws end with evaluations left, up to 64 of the
nearest near misses (within 2ε) drawn so far get up to R candidates each of decoder-guided
rewriting, a candidate already run costing nothing (``decoder/refine.py``). For each way it prints the
members per 1,000 evaluations, the distinct members and the recall at that many evaluations, then
their means (the ratio of means for members per 1,000).
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

import torch

from inversionview.decoder.schedule import parse_schedule
from inversionview.decoder.store import load_decoder
from inversionview.exact.completeness import completeness, members_for_evaluations, spread_queries
from inversionview.exact.preimage import exact_preimages
from inversionview.exact.space import input_space
from inversionview.inversion.invert import resolve_query
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
    parser.add_argument("--refine", type=int, default=0, help="also compare refinement with R evaluations a sample")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    probed = load_probed(args.probed)
    decoder = load_decoder(args.decoder, probed)
    queries = spread_queries(probed, args.queries, args.seed)
    exacts = exact_preimages(probed, queries, limit=0)  # one pass over the space serves every query
    print(f"exact preimages of {len(queries)} queries: {exacts[0].seconds:.1f} s in one pass")
    per_site = defaultdict(list)
    mid_recall, ways = [], []
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
        if args.refine:
            ways.append(compare_ways(probed, decoder, (text, position, site), exact, result, args, seed=args.seed + i))
    print("\nper-site precision (mean over its queries):")
    for name, values in per_site.items():
        print(f"  {name:28s} {statistics.mean(values):6.1%}  ({len(values)} queries)")
    print(f"mean precision over sites: {statistics.mean(statistics.mean(v) for v in per_site.values()):.1%}")
    if mid_recall:
        print(
            f"mean recall@{key} over {len(mid_recall)} queries with 2-5,000 members: {statistics.mean(mid_recall):.1%}"
        )
    if ways:
        summarise_ways(ways, args.samples)


WAYS = ("plain", "cached", "refined")


def compare_ways(probed, decoder, query, exact, plain, args, seed: int) -> dict:
    """Plain sampling's figures at ``args.samples`` samples beside the cached and refined ways at
    as many evaluations; prints one line."""
    text, position, site = query
    members = exact.member_texts(input_space(probed.task).texts)
    drawn = [t for t in plain.sample_texts if t in members]
    records = {
        "plain": {
            "members_per_1000_evaluations": 1000 * plain.precision,
            "distinct_members": len(set(drawn)),
            "recall": plain.recall[str(args.samples)],
            "members_in_preimage": len(members),
        }
    }
    resolved = resolve_query(probed, text, position, site, exact.metric)
    schedule = parse_schedule(args.schedule, args.temperature)
    options = {"schedule": schedule, "metric": exact.metric, "epsilon": exact.epsilon, "seed": seed}
    for way, per_sample in (("cached", 0), ("refined", args.refine)):
        run = members_for_evaluations(decoder, probed, resolved, args.samples, refine_per_sample=per_sample, **options)
        records[way] = run.record(members)
    cells = "  ".join(
        f"{way}: {r['members_per_1000_evaluations']:6.0f}/1k {r['distinct_members']:5d} distinct {r['recall']:6.1%}"
        for way, r in records.items()
    )
    print(f"    {cells}", flush=True)
    return records


def summarise_ways(ways: list[dict], evaluations: int) -> None:
    print(f"\nat {evaluations:,} probed-model evaluations each (means over {len(ways)} queries):")
    plain_rate = statistics.mean(w["plain"]["members_per_1000_evaluations"] for w in ways)
    mid = [w for w in ways if 2 <= w["plain"]["members_in_preimage"] <= 5000]
    for way in WAYS:
        rate = statistics.mean(w[way]["members_per_1000_evaluations"] for w in ways)
        distinct = statistics.mean(w[way]["distinct_members"] for w in ways)
        recall = statistics.mean(w[way]["recall"] for w in mid) if mid else float("nan")
        print(
            f"  {way:8s} members per 1,000 evaluations {rate:7.1f} ({rate / plain_rate:.2f}x plain), "
            f"distinct members {distinct:8.1f}, recall {recall:.1%} over {len(mid)} queries with 2-5,000 members"
        )


if __name__ == "__main__":
    main()
