"""How long `inversionview patch-scan` takes, start-up included: medians of several runs.

python benchmarks/patch_scan_time.py [--probed counting] [--n 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probed", default="counting")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    command = [sys.executable, "-m", "inversionview.cli", "patch-scan", "--probed", args.probed, "--n", str(args.n)]
    seconds = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run([*command, "--json"], check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    print(
        f"patch-scan --probed {args.probed} --n {args.n}: median {statistics.median(seconds):.1f} s "
        f"over {args.runs} runs (all: {', '.join(f'{s:.1f}' for s in seconds)})"
    )


if __name__ == "__main__":
    main()
