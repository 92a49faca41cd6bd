"""How decoder size and training data set the quality of the samples: precision per (size, samples).

    python benchmarks/decoder_scaling.py [--probed counting] [--widths 64,128,256] [--depths 2,4]
        [--samples 32000,128000,512000] [--batch-size 128] [--query-weight 1] [--out benchmarks/results/decoder-scaling]
        [--queries 40] [--threads N] [--device auto] [--plot FILE.png] [--json]

Each point is its own run, with its whole learning-rate schedule spent on its own budget of training
samples (steps = samples / batch size), in ``OUT/{probed}-d{width}-l{depth}-n{samples}``: a run
resumes where it stopped, and a point already in ``OUT/results.json`` is not trained again, so the
study is extended by running it again with more widths, depths or budgets. Each point records the
mean per-site precision (T=1, held-out queries at the named positions, as ``decoder_precision.py``
measures it), the lowest site, the training seconds, the device, and the command that gives it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inversionview.decoder.evaluate import decoder_precision
from inversionview.decoder.store import load_decoder
from inversionview.decoder.train import DecoderTrainConfig, train_decoder
from inversionview.probed import load_probed
from inversionview.storage import read_json, write_json


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def point_command(probed: str, width: int, depth: int, steps: int, batch: int, weight: float, out: Path) -> str:
    return (
        f"inversionview train-decoder --probed {probed} --d-model {width} --n-layers {depth} "
        f"--steps {steps} --batch-size {batch} --eval-every {max(1, steps // 4)} --query-weight {weight:g} --out {out}"
    )


def measure_point(args, probed, width: int, depth: int, budget: int) -> dict:
    steps = max(1, budget // args.batch_size)
    run = args.out / f"{args.probed}-d{width}-l{depth}-n{budget}"
    config = DecoderTrainConfig(
        d_model=width,
        n_layers=depth,
        steps=steps,
        batch_size=args.batch_size,
        eval_every=max(1, steps // 4),
        query_weight=args.query_weight,
    )
    train_decoder(probed, config, run, progress=True)
    decoder = load_decoder(str(run), probed)
    precision = decoder_precision(decoder, probed, queries=args.queries, samples=args.eval_samples, seed=2024)
    provenance = read_json(run / "decoder.json", "decoder")["provenance"]
    site, lowest = precision.lowest
    return {
        "probed": args.probed,
        "d_model": width,
        "n_layers": depth,
        "samples": steps * args.batch_size,
        "steps": steps,
        "parameters": sum(p.numel() for p in decoder.parameters()),
        "mean_precision": round(precision.mean, 4),
        "lowest_site": site,
        "lowest_precision": round(lowest, 4),
        "train_seconds": provenance["seconds"],
        "device": str(probed.device),
        "threads": torch.get_num_threads(),
        "command": point_command(args.probed, width, depth, steps, args.batch_size, args.query_weight, run),
    }


def plot(points: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (by_samples, by_minutes) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for width, depth in sorted({(p["d_model"], p["n_layers"]) for p in points}):
        line = sorted(
            (p for p in points if (p["d_model"], p["n_layers"]) == (width, depth)), key=lambda p: p["samples"]
        )
        label = f"d_model {width}, {depth} layers"
        by_samples.plot([p["samples"] for p in line], [p["mean_precision"] for p in line], marker="o", label=label)
        by_minutes.plot([p["train_seconds"] / 60 for p in line], [p["mean_precision"] for p in line], marker="o")
    top = max(0.2, 1.2 * max(p["mean_precision"] for p in points))
    by_samples.set(xscale="log", xlabel="training samples", ylabel="mean per-site precision", ylim=(0, min(1, top)))
    by_minutes.set(xscale="log", xlabel="training minutes (this machine)")
    for axis in (by_samples, by_minutes):
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded minor labels
    by_samples.legend(fontsize=8)
    fig.suptitle(f"decoder capacity and data: {points[0]['probed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probed", default="counting")
    parser.add_argument("--widths", type=numbers, default=[64, 128, 256])
    parser.add_argument("--depths", type=numbers, default=[2, 4])
    parser.add_argument("--samples", type=numbers, default=[32_000, 128_000, 512_000])
    parser.add_argument("--batch-size", type=int, default=128)
    # The recorded study trained at weight 1, the default then: new points extend the same curves.
    parser.add_argument("--query-weight", type=float, default=1.0)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--eval-samples", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/decoder-scaling"))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--plot")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    probed = load_probed(args.probed, device=args.device)
    results_file = args.out / "results.json"
    points = read_json(results_file, "scaling results")["points"] if results_file.is_file() else []
    done = {(p["probed"], p["d_model"], p["n_layers"], p["samples"]) for p in points}
    for width in args.widths:
        for depth in args.depths:
            for budget in args.samples:
                samples = max(1, budget // args.batch_size) * args.batch_size
                if (args.probed, width, depth, samples) in done:
                    continue
                points.append(measure_point(args, probed, width, depth, budget))
                args.out.mkdir(parents=True, exist_ok=True)
                write_json(results_file, {"points": points})  # after every point: nothing is lost
    if args.plot and points:
        plot([p for p in points if p["probed"] == args.probed], args.plot)
    if args.json:
        print(json.dumps(points))
        return
    print(f"{'d_model':>7} {'layers':>6} {'samples':>9} {'precision':>9} {'lowest':>7} {'minutes':>8}")
    for p in sorted(points, key=lambda p: (p["d_model"], p["n_layers"], p["samples"])):
        print(
            f"{p['d_model']:7d} {p['n_layers']:6d} {p['samples']:9,d} {p['mean_precision']:9.1%} "
            f"{p['lowest_precision']:7.1%} {p['train_seconds'] / 60:8.1f}"
        )
    print(f"[{time.perf_counter() - started:.0f} s]")


if __name__ == "__main__":
    main()
