"""Memory and time of drawing without replacement on a GPT-2-sized vocabulary, sliced against whole.

    python benchmarks/distinct_memory.py [--vocab 50257] [--k 2000] [--repeats 3]

Each measurement runs in its own process (so its peak resident memory is its own): a small random
decoder with a ``--vocab``-token head draws ``--k`` distinct sequences, once scoring the beam's
children a slice of rows at a time (the default, ``decoder.distinct.SCORES_AT_ONCE``) and once all
rows at once. The two alternate; medians are printed, and the ratios of the two in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from inversionview.decoder.distinct import SCORES_AT_ONCE, sample_distinct
from inversionview.decoder.model import Decoder, DecoderConfig


def measure_once(vocab: int, k: int, scores_at_once: int) -> dict:
    """One draw in this process: seconds and peak resident memory (MB)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=vocab, max_len=8, d_activation=16, sites=["site"], d_model=32, n_heads=2)
    decoder = Decoder(config).eval()
    started = time.perf_counter()
    ids = sample_distinct(
        decoder,
        torch.randn(16),
        0,
        k,
        bos_id=0,
        eos_id=1,
        pad_id=2,
        generator=torch.Generator().manual_seed(0),
        scores_at_once=scores_at_once,
    )
    assert len({tuple(row) for row in ids.tolist()}) == k  # every row a different sequence
    return {
        "seconds": time.perf_counter() - started,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--k", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--once", type=int, help=argparse.SUPPRESS)  # a child process: scores at once
    args = parser.parse_args()
    if args.once is not None:
        print(json.dumps(measure_once(args.vocab, args.k, args.once)))
        return

    ways = {"sliced": SCORES_AT_ONCE, "whole": args.vocab * args.k}
    runs: dict[str, list[dict]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, scores in ways.items():
            command = [sys.executable, __file__, "--vocab", str(args.vocab), "--k", str(args.k), "--once", str(scores)]
            runs[name].append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
    median = {
        name: {key: statistics.median(r[key] for r in rs) for key in ("seconds", "peak_mb")}
        for name, rs in runs.items()
    }
    print(f"{args.k} distinct draws, vocabulary {args.vocab}, one thread, medians of {args.repeats}")
    for name, m in median.items():
        print(f"  {name:7s} {m['seconds']:7.1f} s   peak {m['peak_mb']:7.0f} MB")
    print(
        f"  whole / sliced: time {median['whole']['seconds'] / median['sliced']['seconds']:.2f}x, "
        f"peak memory {median['whole']['peak_mb'] / median['sliced']['peak_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
