"""A decoder training step with the read-out over the corpus's tokens against the whole vocabulary,
and with the token match (``--token-match``) added, measured side by side.

    python benchmarks/corpus_vocabulary.py --probed minilm --corpus fortunes.txt --max-tokens 32 [--repeats 10]

The decoders have the same weights (the match's gate starts closed) and train on the same batches,
in alternation; the step is the forward pass, the loss, the backward pass and the optimizer's
update. Prints the median step of each, their ratios and their first losses (the corpus decoder's
is lower: its softmax leaves out the tokens no target is, which a trained decoder gives next to no
probability anyway).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import replace

import torch

from inversionview.decoder.build import decoder_sites, new_decoder
from inversionview.decoder.config import DecoderTrainConfig
from inversionview.decoder.model import Decoder
from inversionview.decoder.stream import ActivationStream
from inversionview.probed import load_probed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probed", default="minilm", help="a free-text model (reads its first and last resid_post)")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    probed = load_probed(args.probed)
    probed.use_corpus(args.corpus, max_len=args.max_tokens)
    sites = ["blocks.0.hook_resid_post", f"blocks.{probed.n_layers - 1}.hook_resid_post"]
    corpus = new_decoder(probed, tied_embeddings=True, sites=sites)
    whole = Decoder(replace(corpus.config, corpus_tokens=False))
    whole.load_state_dict({k: v for k, v in corpus.state_dict().items() if k != "writable"})
    matched = new_decoder(probed, tied_embeddings=True, sites=sites, token_match=True)
    matched.load_state_dict(corpus.state_dict(), strict=False)  # all but the gate, closed
    stream = ActivationStream(
        probed,
        decoder_sites(probed, sites),
        DecoderTrainConfig(batch_size=args.batch_size, query_weight=1.0),
        random.Random(0),
    )
    generator = torch.Generator().manual_seed(0)
    batches = [stream.batch(generator) for _ in range(args.repeats)]
    decoders = {"corpus tokens": corpus, "whole vocabulary": whole, "corpus + match": matched}
    optimizers = {name: torch.optim.AdamW(d.parameters(), lr=1e-4) for name, d in decoders.items()}
    times: dict[str, list[float]] = {name: [] for name in decoders}
    losses: dict[str, list[float]] = {name: [] for name in decoders}
    for batch in batches:
        for name, decoder in decoders.items():
            started = time.perf_counter()
            loss = decoder(*batch)
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()
            times[name].append(time.perf_counter() - started)
            losses[name].append(loss.item())
    writable = int(corpus.writable.sum())
    print(f"{args.probed}: {writable:,} of {corpus.config.vocab_size:,} tokens in the corpus read-out")
    for name in decoders:
        print(f"{name:>16}: median step {statistics.median(times[name]):.3f} s, first loss {losses[name][0]:.4f}")
    medians = {name: statistics.median(times[name]) for name in decoders}
    print(f"whole / corpus: {medians['whole vocabulary'] / medians['corpus tokens']:.2f}x")
    print(f"corpus + match / corpus: {medians['corpus + match'] / medians['corpus tokens']:.2f}x")


if __name__ == "__main__":
    main()
