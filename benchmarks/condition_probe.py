"""Does the decoder's activation encoder keep what the activation holds? Addition's column sums, probed.

    python benchmarks/condition_probe.py [--site blocks.1.hook_resid_post] [--position 9] [--decoder DIR]
                                         [--train 40000] [--steps 3000] [--seed 0]

For each column of ``a+b`` (hundreds F1+S1, tens F2+S2, units F3+S3, each 0-18), a linear and a
one-hidden-layer probe are trained to read the column's sum from (a) the probed model's activation
at the site and position, and (b) the decoder's conditioning vector for that activation (the
output of its activation encoder, the decoder frozen). Probes train on training-split inputs and
are scored on held-out ones. A probe that reads a sum from (a) but not from (b) means the encoder
drops it; one that reads it from neither means the activation does not hold that sum as such
(the ε-ball then cuts across it, and the decoder has to learn the activation's geometry instead).
"""

from __future__ import annotations

import argparse
import random

import torch
from torch import nn

from inversionview.decoder.sampling import site_index
from inversionview.decoder.store import load_decoder
from inversionview.probed import load_probed

COLUMNS = {"F1+S1": (0, 4), "F2+S2": (1, 5), "F3+S3": (2, 6)}
"""Character indices of each column's two digits in ``615+861=1476``."""


def features(probed, decoder, site, position: int, n: int, split: str, seed: int):
    """(activations (n, d), conditioning vectors (n, d_model), column sums (n, 3)) for ``n`` inputs."""
    texts = probed.task.sample_texts(random.Random(seed), n, split=split)
    ids, _ = probed.encode_batch(texts)
    activations = probed.activations(ids, [site])[0][site][:, position].float()
    with torch.no_grad():
        condition = decoder.condition(activations, torch.full((n,), site_index(decoder, site)))
    sums = torch.tensor([[int(t[i]) + int(t[j]) for i, j in COLUMNS.values()] for t in texts])
    return activations, condition, sums


def probe_accuracy(train_x, train_y, test_x, test_y, hidden: bool, steps: int) -> float:
    """Held-out accuracy of a probe (linear, or one hidden layer of 256) on standardized inputs."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    width = train_x.shape[1]
    probe = nn.Sequential(nn.Linear(width, 256), nn.GELU(), nn.Linear(256, 19)) if hidden else nn.Linear(width, 19)
    optimizer = torch.optim.Adam(probe.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = torch.randint(0, len(train_x), (512,))
        loss = nn.functional.cross_entropy(probe((train_x[batch] - mean) / std), train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((probe((test_x - mean) / std).argmax(-1) == test_y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", default="blocks.1.hook_resid_post")
    parser.add_argument("--position", type=int, default=9, help="a named position (BOS = 0); 9 is A1")
    parser.add_argument("--decoder", default=None, help="default: the bundled addition decoder")
    parser.add_argument("--train", type=int, default=40_000, help="training inputs for the probes")
    parser.add_argument("--steps", type=int, default=3000, help="probe training steps (batch 512)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    probed = load_probed("addition")
    decoder = load_decoder(args.decoder, probed)
    site = probed.site(args.site)
    train = features(probed, decoder, site, args.position, args.train, "train", args.seed)
    test = features(probed, decoder, site, args.position, args.train // 10, "heldout", args.seed + 1)
    print(f"{args.site} at position {args.position}: held-out accuracy of probes for each column's sum")
    print(f"{'column':8s} {'read from':20s} {'linear':>8s} {'hidden':>8s}")
    for k, column in enumerate(COLUMNS):
        for source, s in (("activation", 0), ("conditioning vector", 1)):
            accuracy = [
                probe_accuracy(train[s], train[2][:, k], test[s], test[2][:, k], hidden, args.steps)
                for hidden in (False, True)
            ]
            print(f"{column:8s} {source:20s} {accuracy[0]:8.1%} {accuracy[1]:8.1%}", flush=True)


if __name__ == "__main__":
    main()
