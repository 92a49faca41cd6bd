"""Throughput of a verified view against bare decoder generation, measured side by side.

    python benchmarks/throughput.py [--samples 1000] [--repeats 5] [--threads 2]

For each repeat it times, in alternation, (a) a full ``invert`` of the default counting query
(sampling, probed-model verification, best positions, colours), (b) bare decoder generation of
the same number of samples and (c) the same view drawn without replacement (``--schedule distinct``).
Prints medians, verified samples per second, and the ratios a/b and c/a.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from inversionview.decoder.sampling import sample_ids
from inversionview.decoder.schedule import parse_schedule
from inversionview.decoder.store import load_decoder
from inversionview.inversion.invert import invert
from inversionview.probed import load_probed
from inversionview.probed.verify import query_activation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probed", default="counting")
    parser.add_argument("--input", default="vvzccvczvv|v:5")
    parser.add_argument("--position", type=int, default=-2)
    parser.add_argument("--site", default="blocks.1.hook_resid_post")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    probed = load_probed(args.probed)
    decoder = load_decoder(None, probed)
    print(f"start-up (load models): {time.perf_counter() - started:.2f} s; torch threads {torch.get_num_threads()}")
    site = probed.site(args.site)
    schedule, distinct = parse_schedule("auto"), parse_schedule("distinct")
    view_times, bare_times, distinct_times = [], [], []
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        t0 = time.perf_counter()
        result = invert(
            probed, decoder, args.input, args.position, site, samples=args.samples, seed=repeat, schedule=schedule
        )
        t1 = time.perf_counter()
        query = query_activation(probed, site, args.input, result.query.position)
        generator = torch.Generator().manual_seed(repeat)
        for start in range(0, args.samples, 500):
            n = min(500, args.samples - start)
            sample_ids(decoder, probed, site, query.expand(n, -1), temperature=1.0, generator=generator)
        t2 = time.perf_counter()
        invert(probed, decoder, args.input, args.position, site, samples=args.samples, seed=repeat, schedule=distinct)
        t3 = time.perf_counter()
        if repeat:
            view_times.append(t1 - t0)
            bare_times.append(t2 - t1)
            distinct_times.append(t3 - t2)
    view, bare, distinct_view = (statistics.median(t) for t in (view_times, bare_times, distinct_times))
    print(
        f"{args.samples}-sample verified view: median {view:.2f} s over {args.repeats} runs "
        f"({args.samples / view:.0f} verified samples/s)"
    )
    print(f"bare decoder generation of {args.samples}: median {bare:.2f} s")
    print(f"view / bare generation: {view / bare:.2f}x (same runs, alternated)")
    print(f"distinct view (without replacement): median {distinct_view:.2f} s, {distinct_view / view:.2f}x the view")


if __name__ == "__main__":
    main()
