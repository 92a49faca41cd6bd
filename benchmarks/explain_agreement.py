"""Verdicts from decoder samples against verdicts from the exact ε-preimage (addition).

    python benchmarks/explain_agreement.py [--queries 24] [--samples 300] [--schedule auto] [--seed 0] [--json]

For seeded held-out queries spread over every site and named position (``spread_queries``), the
features each reading's samples keep (``invert --explain``) are set beside the features the exact
preimage keeps (all its members, from one brute-force pass over the 810,000 inputs). Prints the
agreement (share of (query, feature) verdicts that match) and where they differ; ``--json`` prints
``{"agreement": …, "n": …, "differ": […]}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from inversionview.decoder.store import load_decoder
from inversionview.exact.completeness import spread_queries
from inversionview.exact.preimage import exact_preimages
from inversionview.exact.space import input_space
from inversionview.interpret.explain import TOO_FEW, feature_verdicts, members_read_at, verdicts_over
from inversionview.inversion.invert import invert
from inversionview.inversion.schedule import parse_schedule
from inversionview.probed import load_probed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=24)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule", default="auto", help="the readings' schedule: auto, distinct, …")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    probed = load_probed("addition")
    decoder = load_decoder(None, probed)
    queries = spread_queries(probed, args.queries, seed=args.seed)
    schedule = parse_schedule(args.schedule)
    exact = exact_preimages(probed, queries, limit=0)
    texts = input_space(probed.task).texts
    matches, unweighted, withheld, differ = [], [], 0, Counter()
    for (text, position, site), truth in zip(queries, exact):
        reading = invert(probed, decoder, text, position, site, samples=args.samples, seed=args.seed, schedule=schedule)
        from_samples = {v.name: v.verdict for v in feature_verdicts(probed, decoder, reading, seed=args.seed)}
        read_at = members_read_at(reading)
        once = verdicts_over(probed, list(read_at), text, position, seed=args.seed, read_at=read_at)
        counted_once = {v.name: v.verdict for v in once}
        members = sorted(truth.member_texts(texts))
        from_exact = {v.name: v.verdict for v in verdicts_over(probed, members, text, position, seed=args.seed)}
        for name, verdict in from_exact.items():
            if from_samples[name] == TOO_FEW:
                withheld += 1  # the reading said it had too few members rather than guess
                continue
            matches.append(verdict == from_samples[name])
            unweighted.append(verdict == counted_once[name])
            if verdict != from_samples[name]:
                differ[f"{name}: exact {verdict}, samples {from_samples[name]}"] += 1
    figures = {
        "agreement": round(sum(matches) / len(matches), 4),
        "n": len(matches),
        "withheld": withheld,
        "agreement_members_counted_once": round(sum(unweighted) / len(unweighted), 4),
        "differ": differ.most_common(10),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"agreement {figures['agreement']:.1%} over {len(matches)} (query, feature) verdicts, {len(queries)} queries "
        f"({withheld} withheld: too few members); members counted once: {figures['agreement_members_counted_once']:.1%}"
    )
    for what, count in differ.most_common(10):
        print(f"  {count:3d}  {what}")
    print(f"[{time.perf_counter() - started:.0f} s]")


if __name__ == "__main__":
    main()
