"""Seeded outputs before and after a change: the JSON of invert, exact, completeness and patch-scan
on the bundled models, saved once and compared later, so that a refactor can show it changed nothing.

python benchmarks/seeded_outputs.py --save before.json.gz [--src OTHER_CHECKOUT/src]
python benchmarks/seeded_outputs.py --compare before.json.gz

A record is gzipped JSON (it lists every sample: 0.8 MB as text, 70 kB gzipped).
benchmarks/results/seeded_outputs_bde4266.json.gz is the record of bde4266, the code before the
reading's settings, the ε-ball and the command line were each written once.

Each command runs as a fresh process (``python -m inversionview``) with the given source folder first
on the path, so the same script can record an older checkout. Timings are dropped, and numbers are
compared at float32's precision (6 significant digits), the precision the JSON is written at.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

COMMANDS = {
    "invert counting": "invert --input vvzccvczvv|v:5 --position -2 --site blocks.1.hook_resid_post --samples 300",
    "invert addition": "invert --probed addition --input 615+861=1476 --position -3 --site blocks.0.hook_resid_post "
    "--samples 300",
    "invert refine": "invert --probed addition --input 615+861=1476 --position -3 --site blocks.0.hook_resid_post "
    "--samples 200 --refine 4",
    "exact counting": "exact --input vvzccvczvv|v:5 --position -2 --site blocks.0.hook_resid_post",
    "completeness counting": "completeness --input vzc|v:1 --position -2 --site blocks.0.hook_resid_post "
    "--samples 1000",
    "patch-scan counting": "patch-scan --n 20",
}
"""Each output's name and its command line (``--json --threads 1`` added)."""

TIMING_WORDS = ("seconds", "elapsed", "per_second")


def run(command: str, src: Path | None) -> object:
    """The parsed JSON a command prints."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src.resolve()}{os.pathsep}{env.get('PYTHONPATH', '')}"
    argv = [sys.executable, "-m", "inversionview", *command.split(), "--json", "--threads", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command!r} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def comparable(value: object) -> object:
    """``value`` without timings, its floats at 6 significant digits."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if not any(word in k for word in TIMING_WORDS)}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def differences(before: object, after: object, where: str = "") -> list[str]:
    """Where ``after`` differs from ``before``; keys only ``after`` has are new, not differences."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = [f"{where}.{k}: missing" for k in before if k not in after]
        return found + [line for k in before if k in after for line in differences(before[k], after[k], f"{where}.{k}")]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [line for i, (b, a) in enumerate(zip(before, after)) for line in differences(b, a, f"{where}[{i}]")]
    return [] if before == after else [f"{where}: {str(before)[:80]} -> {str(after)[:80]}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path, help="record the outputs in this file")
    mode.add_argument("--compare", type=Path, help="compare the outputs with this record")
    parser.add_argument("--src", type=Path, help="the source folder to run (default: the installed package)")
    args = parser.parse_args()
    outputs = {name: comparable(run(command, args.src)) for name, command in COMMANDS.items()}
    if args.save:
        args.save.write_bytes(gzip.compress(json.dumps(outputs).encode("utf-8")))
        print(f"saved {len(outputs)} outputs to {args.save}")
        return
    before = json.loads(gzip.decompress(args.compare.read_bytes()))
    changed = {name: differences(before[name], outputs[name]) for name in COMMANDS if name in before}
    for name, lines in changed.items():
        print(f"{name}: {'identical' if not lines else f'{len(lines)} differences'}")
        for line in lines[:10]:
            print(f"    {line}")
    sys.exit(1 if any(changed.values()) else 0)


if __name__ == "__main__":
    main()
