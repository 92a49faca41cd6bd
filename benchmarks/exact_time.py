"""Wall time of one exact preimage from the command line, start-up included (median of runs).

python benchmarks/exact_time.py [--runs 3] [--site blocks.1.hook_resid_post]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probed", default="addition")
    parser.add_argument("--input", default="615+861=1476")
    parser.add_argument("--position", default="8")
    parser.add_argument("--site", default="blocks.1.hook_resid_post")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    command = [
        sys.executable,
        "-m",
        "inversionview.cli",
        "exact",
        "--probed",
        args.probed,
        "--input",
        args.input,
        "--position",
        args.position,
        "--site",
        args.site,
        "--json",
        "--limit",
        "5",
    ]
    walls = []
    for _ in range(args.runs):
        started = time.perf_counter()
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        walls.append(time.perf_counter() - started)
        result = json.loads(out)
    print(f"{args.input!r} @ {args.position}, {args.site}: {result['n_members']:,} members of {result['space_size']:,}")
    print(
        f"wall time, start-up included: median {statistics.median(walls):.1f} s over {args.runs} runs "
        f"(min {min(walls):.1f}, max {max(walls):.1f}); in-process scan {result['seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
