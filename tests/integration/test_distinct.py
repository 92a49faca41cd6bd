"""Sampling without replacement: distinct sequences, drawn as the decoder's own distribution says."""

import json
from collections import Counter

import pytest
import torch

from inversionview.cli import main
from inversionview.decoder.distinct import sample_distinct
from inversionview.decoder.model import Decoder, DecoderConfig, mask_unwritable
from tests.commands import cli_args

BOS, EOS, PAD = 0, 1, 2  # tokens 3 and 4 are the text; at most 3 of them fit in max_len 5


@pytest.fixture(scope="module")
def peaked_decoder() -> Decoder:
    """A tiny random decoder with a small space (15 sequences) and a distribution far from uniform."""
    torch.manual_seed(11)
    decoder = Decoder(DecoderConfig(vocab_size=5, max_len=5, d_activation=4, sites=["s"], d_model=16, n_heads=2))
    with torch.no_grad():
        decoder.head.weight.mul_(5)  # top sequence ~0.6: neither uniform nor one certain answer
    return decoder.eval()


def exact_distribution(decoder: Decoder, activation: torch.Tensor, temperature: float = 1.0) -> dict[tuple, float]:
    """Every sequence the decoder can write, with its probability, by walking the whole tree."""
    out, frontier = {}, [((BOS,), 0.0)]
    while frontier:
        prefix, log_prob = frontier.pop()
        state = decoder.start(activation[None], torch.tensor([0]))
        for pos, token in enumerate(prefix):
            logits = decoder.step(state, torch.tensor([token]), pos)
        logits = mask_unwritable(logits, bos_id=BOS, eos_id=EOS, pad_id=PAD)
        if len(prefix) == decoder.config.max_len - 1:
            out[(*prefix, EOS)] = log_prob
            continue
        for token, token_log_prob in enumerate((logits[0] / temperature).log_softmax(-1).tolist()):
            if token == EOS:
                out[(*prefix, EOS)] = log_prob + token_log_prob
            elif token_log_prob > float("-inf"):
                frontier.append(((*prefix, token), log_prob + token_log_prob))
    return {seq: torch.tensor(lp).exp().item() for seq, lp in out.items()}


def as_tuples(ids: torch.Tensor) -> list[tuple]:
    return [tuple(t for t in row if t != PAD) for row in ids.tolist()]


def draw(decoder: Decoder, activation: torch.Tensor, k: int, seed: int, temperature: float = 1.0) -> list[tuple]:
    ids = sample_distinct(
        decoder,
        activation,
        0,
        k,
        bos_id=BOS,
        eos_id=EOS,
        pad_id=PAD,
        temperature=temperature,
        generator=torch.Generator().manual_seed(seed),
    )
    return as_tuples(ids)


def test_asking_for_more_than_the_space_returns_every_sequence_once(peaked_decoder):
    activation = torch.randn(4)
    space = exact_distribution(peaked_decoder, activation)
    assert len(space) == 15 and sum(space.values()) == pytest.approx(1.0, abs=1e-4)
    drawn = draw(peaked_decoder, activation, 100, seed=0)
    assert len(drawn) == 15 and set(drawn) == set(space)


def test_draws_follow_the_decoder_first_and_second_without_replacement(peaked_decoder):
    activation = torch.randn(4, generator=torch.Generator().manual_seed(2))
    p = exact_distribution(peaked_decoder, activation)
    assert 0.3 < max(p.values()) < 0.9  # spread, but far from uniform, so a biased sampler shows
    trials = 3000
    firsts, seconds = Counter(), Counter()
    for seed in range(trials):
        first, second = draw(peaked_decoder, activation, 2, seed=seed)
        assert first != second
        firsts[first] += 1
        seconds[second] += 1
    # The second draw: any first f, then s from the rest, renormalised.
    second_p = {s: sum(p[f] * p[s] / (1 - p[f]) for f in p if f != s) for s in p}
    for observed, expected in ((firsts, p), (seconds, second_p)):
        total_variation = 0.5 * sum(abs(observed[s] / trials - expected[s]) for s in p)
        assert total_variation < 0.05


def test_temperature_zero_lists_the_most_likely_sequences_in_order(peaked_decoder):
    activation = torch.randn(4, generator=torch.Generator().manual_seed(3))
    p = exact_distribution(peaked_decoder, activation)
    drawn = draw(peaked_decoder, activation, 4, seed=0, temperature=0)
    assert drawn == sorted(p, key=p.get, reverse=True)[:4]


@pytest.mark.parametrize("temperature", [1.0, 0.0])
@pytest.mark.parametrize("k", [4, 12])
def test_scoring_children_a_few_rows_at_a_time_draws_the_same(peaked_decoder, temperature, k):
    activation = torch.randn(4, generator=torch.Generator().manual_seed(4))
    draws = [
        sample_distinct(
            peaked_decoder,
            activation,
            0,
            k,
            bos_id=BOS,
            eos_id=EOS,
            pad_id=PAD,
            temperature=temperature,
            generator=torch.Generator().manual_seed(5),
            scores_at_once=scores,
        )
        for scores in (1 << 22, 5, 10)  # all rows at once; one beam row (5 tokens) a slice; two
    ]
    assert len(draws[0]) == k
    assert all(torch.equal(draws[0], other) for other in draws[1:])


def test_invert_with_the_distinct_schedule_shows_different_inputs(tiny_probed_dir, tiny_decoder_dir, capsys):
    query = {"input": "abcabc|a:2", "position": -1, "site": "blocks.1.hook_resid_post", "samples": 40}
    main(cli_args("invert", probed=tiny_probed_dir, decoder=tiny_decoder_dir, **query, schedule="distinct", json=True))
    result = json.loads(capsys.readouterr().out)
    texts = [s["text"] for s in result["samples"]]
    assert len(texts) == 40 and len(set(texts)) == 40
    assert result["settings"]["schedule"] == "distinct T=1"
    distances = [s["distance"] for s in result["samples"]]
    assert distances == sorted(distances)
