"""What the facts model's heads and residual stream keep: verdict counts over many readings.

    python benchmarks/facts_readings.py [--decoder DIR] [--prompts 8] [--samples 300] [--seed 0] [--json]

For ``--prompts`` held-out country prompts (``{city} … in the country of``, each a different city),
reads every site the decoder serves at ``END`` (the heads) and the residual stream after every layer
at ``subject_last``, with ``invert --explain``, and counts for each (site, position) how many
readings judged each feature encoded, partly, not or uncertain. One reading is an anecdote; the
counts say what a site keeps for prompts in general.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter

from inversionview.decoder.store import load_decoder
from inversionview.interpret.explain import explain
from inversionview.inversion.invert import invert
from inversionview.probed import load_probed
from inversionview.tasks.facts import parse_prompt

FEATURES = ("city", "country", "continent", "language", "relation", "template")


def country_prompts(probed, n: int, seed: int) -> list[str]:
    """``n`` held-out country prompts about different cities, cut at END (the answer left out)."""
    rng, prompts, cities = random.Random(seed), [], set()
    while len(prompts) < n:
        prompt = parse_prompt(probed.task.sample_texts(rng, 1, split="heldout")[0])
        if prompt.relation == "country" and prompt.city not in cities:
            cities.add(prompt.city)
            prompts.append(prompt.prompt)
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", default=None)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    probed = load_probed("facts")
    decoder = load_decoder(args.decoder, probed)
    heads = [s for s in decoder.config.sites if ".attn.hook_result." in s]
    streams = [s for s in decoder.config.sites if s.endswith("hook_resid_post")]
    cells = [(site, "END") for site in heads] + [(site, "subject_last") for site in streams]
    table = {}
    for site, position in cells:
        counts = {name: Counter() for name in FEATURES}
        precision = []
        for text in country_prompts(probed, args.prompts, args.seed):
            reading = invert(probed, decoder, text, position, site, samples=args.samples, seed=args.seed)
            precision.append(reading.precision)
            for row in explain(probed, decoder, reading).features:
                if row["name"] in counts:
                    counts[row["name"]][row["verdict"]] += 1
        table[f"{site}@{position}"] = {
            "precision": round(sum(precision) / len(precision), 3),
            "verdicts": {name: dict(counter) for name, counter in counts.items()},
        }
    if args.json:
        print(json.dumps({"prompts": args.prompts, "samples": args.samples, "cells": table}))
        return
    print(f"{args.prompts} held-out country prompts, {args.samples} samples a reading; encoded/partly/not/uncertain")
    print(f"{'site@position':42s} {'prec.':>5s}  " + "  ".join(f"{name:>11s}" for name in FEATURES))
    for cell, row in table.items():
        shown = [
            "/".join(str(row["verdicts"][n].get(v, 0)) for v in ("encoded", "partly", "not", "uncertain"))
            for n in FEATURES
        ]
        print(f"{cell:42s} {row['precision']:5.2f}  " + "  ".join(f"{s:>11s}" for s in shown))
    print(f"[{time.perf_counter() - started:.0f} s]")


if __name__ == "__main__":
    main()
