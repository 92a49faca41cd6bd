"""Verdicts from decoder samples against verdicts from the exact ε-preimage (addition), and how
stable each verdict is as a reading draws more samples (addition and counting).

    python benchmarks/explain_agreement.py [--queries 24] [--samples 300] [--stability-samples 200,500,1000]
                                           [--schedule auto] [--seed 0] [--json]

Agreement: for seeded held-out queries spread over every site and named position (``spread_queries``),
the features each reading's samples keep (``invert --explain``) beside the features the exact preimage
keeps (all its members, from one brute-force pass over the 810,000 inputs); a reading's "uncertain"
verdicts are withheld, and counted. Stability: for the same kind of queries on addition and counting,
the share of (query, site, feature) verdicts that say the same at every sample size, where "uncertain"
at some size and a verdict at the others counts as the same (the reading withheld, it did not
contradict itself). ``--json`` prints ``{"agreement", "n", "withheld", "stability", …}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from inversionview.decoder.schedule import parse_schedule
from inversionview.decoder.store import load_decoder
from inversionview.exact.completeness import spread_queries
from inversionview.exact.preimage import exact_preimages
from inversionview.exact.space import input_space
from inversionview.interpret.explain import UNCERTAIN, feature_verdicts, members_read_at, verdicts_over
from inversionview.inversion.invert import invert
from inversionview.probed import load_probed


def agreement(args: argparse.Namespace) -> dict:
    """Verdicts from ``args.samples`` samples against the exact preimage's, on addition."""
    probed = load_probed("addition")
    decoder = load_decoder(None, probed)
    queries = spread_queries(probed, args.queries, seed=args.seed)
    exact = exact_preimages(probed, queries, limit=0)
    texts = input_space(probed.task).texts
    matches, unweighted, withheld, differ = [], [], 0, Counter()
    for (text, position, site), truth in zip(queries, exact):
        options = {"samples": args.samples, "seed": args.seed, "schedule": args.plan, "inclusion": True}
        reading = invert(probed, decoder, text, position, site, **options)
        from_samples = {v.name: v.verdict for v in feature_verdicts(probed, decoder, reading, seed=args.seed)}
        read_at = members_read_at(reading)
        once = verdicts_over(probed, list(read_at), text, position, seed=args.seed, read_at=read_at)
        counted_once = {v.name: v.verdict for v in once}
        members = sorted(truth.member_texts(texts))
        from_exact = verdicts_over(probed, members, text, position, seed=args.seed, exact=True)
        for name, verdict in ((v.name, v.verdict) for v in from_exact):
            if from_samples[name] == UNCERTAIN:
                withheld += 1  # the reading said it could not tell rather than guess
                continue
            matches.append(verdict == from_samples[name])
            if counted_once[name] != UNCERTAIN:
                unweighted.append(verdict == counted_once[name])
            if verdict != from_samples[name]:
                differ[f"{name}: exact {verdict}, samples {from_samples[name]}"] += 1
    return {
        "agreement": round(sum(matches) / max(len(matches), 1), 4),
        "n": len(matches),
        "withheld": withheld,
        "agreement_members_counted_once": round(sum(unweighted) / max(len(unweighted), 1), 4),
        "differ": differ.most_common(10),
    }


def stability(args: argparse.Namespace, name: str) -> dict:
    """How often each (query, site, feature) verdict holds across ``args.stability_samples``."""
    probed = load_probed(name)
    decoder = load_decoder(None, probed)
    sizes = [int(n) for n in args.stability_samples.split(",")]
    same, identical, decided, total = 0, 0, 0, 0
    for text, position, site in spread_queries(probed, args.queries, seed=args.seed):
        by_size = []
        for samples in sizes:
            options = {"samples": samples, "seed": args.seed, "schedule": args.plan, "inclusion": True}
            reading = invert(probed, decoder, text, position, site, **options)
            by_size.append({v.name: v.verdict for v in feature_verdicts(probed, decoder, reading, seed=args.seed)})
        for feature in by_size[0]:
            verdicts = [verdicts[feature] for verdicts in by_size]
            said = {v for v in verdicts if v != UNCERTAIN}
            same += len(said) <= 1
            identical += len(set(verdicts)) == 1
            decided += verdicts[-1] != UNCERTAIN
            total += 1
    return {
        "stability": round(same / total, 4),
        "identical": round(identical / total, 4),
        "decided_at_largest": round(decided / total, 4),
        "n": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=24)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--stability-samples", default="200,500,1000", help="sample sizes whose verdicts are compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule", default="auto", help="the readings' schedule: auto, distinct, …")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.plan = parse_schedule(args.schedule)
    started = time.perf_counter()
    figures = agreement(args)
    by_task = {name: stability(args, name) for name in ("addition", "counting")}
    figures["stability"] = round(min(s["stability"] for s in by_task.values()), 4)
    figures["stability_by_task"] = by_task
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"agreement {figures['agreement']:.1%} over {figures['n']} (query, feature) verdicts, {args.queries} queries "
        f"({figures['withheld']} withheld: uncertain); members counted once: "
        f"{figures['agreement_members_counted_once']:.1%}"
    )
    for what, count in figures["differ"]:
        print(f"  {count:3d}  {what}")
    for name, s in by_task.items():
        print(
            f"stability on {name} at {args.stability_samples} samples: {s['stability']:.1%} of {s['n']} verdicts "
            f"({s['identical']:.1%} identical, {s['decided_at_largest']:.1%} decided at the largest)"
        )
    print(f"[{time.perf_counter() - started:.0f} s]")


if __name__ == "__main__":
    main()
