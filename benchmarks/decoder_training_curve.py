"""Decoder precision against CPU-minutes of training.

    python benchmarks/decoder_training_curve.py --from runs/counting-decoder   # a run's recorded curve
    python benchmarks/decoder_training_curve.py --minutes 15 [--threads 1]     # train afresh and print
    python benchmarks/decoder_training_curve.py --minutes 15 --d-model 64 --n-layers 4 --lr 3e-3   # a variant
    python benchmarks/decoder_training_curve.py --minutes 15 --occurrences   # with occurrence numbers

Training records, at every evaluation, the wall seconds, torch threads, samples seen, loss and the
per-site precision (T=1, ε=0.1, held-out queries at the task's named positions). CPU-minutes are
wall minutes times threads; stretches of a run continued on a GPU count as GPU-minutes instead.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from inversionview.decoder.config import DEFAULT_BATCH_SIZE
from inversionview.decoder.train import DecoderTrainConfig, train_decoder
from inversionview.probed import load_probed
from inversionview.storage import CHECKPOINT_STATE_FILE, DECODER_CONFIG_FILE


def history_of(directory: Path) -> list[dict]:
    checkpoint = directory / CHECKPOINT_STATE_FILE
    if checkpoint.is_file():
        return json.loads(checkpoint.read_text())["state"]["history"]
    return json.loads((directory / DECODER_CONFIG_FILE).read_text())["provenance"]["history"]


def print_curve(history: list[dict]) -> None:
    header = ("step", "CPU-min", "GPU-min", "batch", "samples", "loss", "mean prec", "min prec")
    print("{:>7} {:>8} {:>8} {:>5} {:>10} {:>6} {:>9} {:>8}".format(*header))
    cpu_minutes = gpu_minutes = previous_seconds = 0.0
    for row in history:
        # Each stretch between evaluations counts on the device it ran on, times its threads on a CPU.
        stretch = (row["seconds"] - previous_seconds) / 60
        previous_seconds = row["seconds"]
        if row.get("device", "cpu") == "cpu":
            cpu_minutes += stretch * row.get("threads", 1)
        else:
            gpu_minutes += stretch
        values = row["precision"].values()
        print(
            f"{row['step']:7d} {cpu_minutes:8.1f} {gpu_minutes:8.1f} {row.get('batch_size', DEFAULT_BATCH_SIZE):5d} "
            f"{row.get('samples_seen', 0):10d} {row['loss']:6.3f} {row['mean_precision']:9.1%} {min(values):8.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", type=Path, help="print the curve recorded in this run directory")
    parser.add_argument("--minutes", type=float, default=15.0, help="wall minutes to train when not --from")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probed", default="counting")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--d-model", type=int, help="decoder width (default: the shipped recipe's)")
    parser.add_argument("--n-layers", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--occurrences", action="store_true", help="give the decoder each token's occurrence number")
    parser.add_argument("--keep", type=Path, help="train into this directory (kept) instead of a temporary one")
    args = parser.parse_args()
    if args.source:
        print_curve(history_of(args.source))
        return
    torch.set_num_threads(args.threads)
    probed = load_probed(args.probed)
    config = DecoderTrainConfig(max_seconds=args.minutes * 60, eval_every=args.eval_every)
    config.occurrences = args.occurrences
    for key in ("d_model", "n_layers", "lr", "batch_size"):
        if getattr(args, key) is not None:
            setattr(config, key, getattr(args, key))
    print(
        f"recipe: d_model {config.d_model}, {config.n_layers} layers, lr {config.lr}, batch {config.batch_size}"
        f"{', occurrence numbers' if config.occurrences else ''}"
    )
    if args.keep:
        train_decoder(probed, config, args.keep)
        print_curve(history_of(args.keep))
        return
    with tempfile.TemporaryDirectory() as out:
        train_decoder(probed, config, Path(out))
        print_curve(history_of(Path(out)))


if __name__ == "__main__":
    main()
