"""How good a decoder a time budget buys: train one from scratch with the default recipe and
``--minutes``, then measure it as ``benchmarks/decoder_precision.py`` does.

    python benchmarks/time_to_precision.py --probed counting --minutes 30 --threads 2 [--seed S] --json
    python benchmarks/time_to_precision.py --probed DIR --task counting --vocab ... --minutes 10 --threads 2

Training runs as the command a user would type (``inversionview train-decoder … --minutes M``), in a
child process, so its start-up counts in the budget and its CPU time is measured alone. Every
probed-model option of ``train-decoder`` is accepted and passed on (``--probed DIR --task … --vocab …
--allow-pickle``, ``--corpus``); other ``train-decoder`` options after ``--`` change the recipe
(``-- --token-match``). The run is kept in ``--out`` (default: a temporary folder).

Prints one JSON object with ``--json``: ``{"precision", "lowest_site", "minutes", "cpu_minutes",
"samples", "steps"}`` (precision: mean per-site share of T=1 samples inside ε on ``--queries``
held-out queries × ``--samples`` samples, seed 2024, as decoder_precision.py; ``minutes``: wall
time of the training command; ``cpu_minutes``: its user + system CPU time).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import torch

from inversionview.cli import probed_options
from inversionview.commands import load_probed_from
from inversionview.decoder.evaluate import decoder_precision
from inversionview.decoder.store import load_decoder
from inversionview.decoder.train import read_run_summary
from inversionview.probed.source import ProbedSource


def parse() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[probed_options()]
    )
    parser.add_argument("--minutes", type=float, required=True, help="the training budget, wall-clock")
    parser.add_argument("--seed", type=int, default=0, help="the training run's seed")
    parser.add_argument("--out", type=Path, help="keep the run here (default: a temporary folder)")
    parser.add_argument("--queries", type=int, default=40, help="held-out queries per site (40)")
    parser.add_argument("--samples", type=int, default=50, help="T=1 samples per query (50)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    argv = sys.argv[1:]
    recipe = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    return args, recipe


def training_command(args: argparse.Namespace, out: Path, recipe: list[str]) -> list[str]:
    """``inversionview train-decoder`` with the benchmark's probed-model options and budget."""
    command = [sys.executable, "-m", "inversionview", "train-decoder", "--out", str(out)]
    for field in fields(ProbedSource):  # every probed-model option, as train-decoder takes it
        value = getattr(args, field.name)
        if value is not None and value is not False and value != field.default:
            flag = "--" + field.name.replace("_", "-")
            command += [flag] if value is True else [flag, str(value)]
    return [*command, "--minutes", str(args.minutes), "--seed", str(args.seed), *recipe]


def train(command: list[str]) -> tuple[float, float]:
    """Run the training command; its wall and CPU minutes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=sys.stderr)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall / 60, cpu / 60


def main() -> None:
    args, recipe = parse()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch) / "decoder"
        minutes, cpu_minutes = train(training_command(args, out, recipe))
        if args.threads:
            torch.set_num_threads(args.threads)
        probed = load_probed_from(args)
        measured = decoder_precision(load_decoder(out, probed), probed, queries=args.queries, samples=args.samples)
        summary = read_run_summary(out)
    site, lowest = measured.lowest
    result = {
        "precision": round(measured.mean, 4),
        "lowest_site": {"site": site, "precision": round(lowest, 4)},
        "minutes": round(minutes, 2),
        "cpu_minutes": round(cpu_minutes, 2),
        "samples": summary["samples"],
        "steps": summary["steps"],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"mean precision {measured.mean:.1%} ± {measured.standard_error:.1%}, lowest {site} {lowest:.1%}")
    print(f"{result['steps']:,} steps, {result['samples']:,} samples in {minutes:.1f} min ({cpu_minutes:.1f} CPU-min)")


if __name__ == "__main__":
    main()
