"""What --explain adds to a reading: medians of readings with and without it, side by side.

python benchmarks/explain_overhead.py [--samples 1000] [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

from inversionview.decoder.store import load_decoder
from inversionview.interpret.explain import explain
from inversionview.inversion.invert import invert
from inversionview.probed import load_probed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    probed = load_probed("counting")
    decoder = load_decoder(None, probed)
    query = ("vvzccvczvv|v:5", -2, "blocks.1.hook_resid_post")
    plain, explained = [], []
    for run in range(args.runs):  # alternate, so that both see the same machine
        started = time.perf_counter()
        invert(probed, decoder, *query, samples=args.samples, seed=run)
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        explain(probed, decoder, invert(probed, decoder, *query, samples=args.samples, seed=run, inclusion=True))
        explained.append(time.perf_counter() - started)
    a, b = statistics.median(plain), statistics.median(explained)
    print(
        f"{args.samples}-sample reading: {a:.3f} s without --explain, {b:.3f} s with (medians of {args.runs}): "
        f"+{100 * (b / a - 1):.1f} %"
    )


if __name__ == "__main__":
    main()
