"""Results checked against truths computed here, independently of the code under test: distances
from Hugging Face's own ``hidden_states`` (not our hooks) and plain arithmetic, token ids from
``encode`` of every input."""

from __future__ import annotations

import random

import pytest
import torch

from inversionview.decoder.store import load_decoder
from inversionview.exact.preimage import exact_preimage
from inversionview.exact.space import input_space
from inversionview.inversion.invert import invert
from inversionview.tasks import get_task

SITE = "blocks.0.hook_resid_post"
"""Hugging Face's ``hidden_states[1]``: layer 0's output, before any final norm."""


def brute_force_distances(probed, text: str, query: torch.Tensor) -> torch.Tensor:
    """‖q − a‖ / ‖q‖ at every position of ``text`` before its EOS, from the model's hidden states."""
    ids = torch.tensor([probed.task.encode(text)])
    with torch.no_grad():
        hidden = probed.model(input_ids=ids, output_hidden_states=True).hidden_states[1][0]  # (T, d)
    positions = hidden[: ids.shape[1] - 1]  # BOS and the text tokens, not EOS
    return torch.stack([(query - a).norm() / query.norm() for a in positions])


def query_vector(probed, text: str, position: int) -> torch.Tensor:
    ids = torch.tensor([probed.task.encode(text)])
    with torch.no_grad():
        return probed.model(input_ids=ids, output_hidden_states=True).hidden_states[1][0, position]


def test_addition_enumerate_ids_is_encode_of_every_input():
    task = get_task("addition")
    texts = task.enumerate_texts()
    ids = task.enumerate_ids()
    assert ids.shape[0] == len(texts)
    for row in random.Random(0).sample(range(len(texts)), 5000) + [0, len(texts) - 1]:
        encoded = task.encode(texts[row])
        assert ids[row, : len(encoded)].tolist() == encoded
        assert (ids[row, len(encoded) :] == task.tokenizer.pad_id).all()


def test_a_readings_distances_and_members_match_a_brute_force_computation(tiny_probed, tiny_decoder_dir):
    text, position, epsilon = "vvzccvczvv|v:5", 12, 0.3
    result = invert(
        tiny_probed, load_decoder(tiny_decoder_dir, tiny_probed), text, position, SITE, samples=60, epsilon=epsilon
    )
    query = query_vector(tiny_probed, text, position)
    for sample in result.samples:
        truth = brute_force_distances(tiny_probed, sample.text, query)
        assert sample.distance == pytest.approx(float(truth.min()), abs=1e-4)
        assert truth[sample.best_position] == pytest.approx(float(truth.min()), abs=1e-4)
        assert sample.in_preimage == (float(truth.min()) <= epsilon)
    assert result.precision == sum(
        float(brute_force_distances(tiny_probed, s.text, query).min()) <= epsilon for s in result.samples
    ) / len(result.samples)


def test_exact_preimage_is_the_set_a_brute_force_pass_finds(tiny_addition):
    """Every one of the 810,000 inputs, run through the model's own forward pass: the exact preimage's
    distances, its member count and its nearest members are what plain arithmetic gives."""
    text, position, epsilon = "615+861=1476", 8, 0.3
    result = exact_preimage(tiny_addition, text, position, SITE, epsilon=epsilon, limit=25)
    space, task = input_space(tiny_addition.task), tiny_addition.task
    query = query_vector(tiny_addition, text, position)
    truth = torch.empty(space.size)
    for start in range(0, space.size, 20_000):
        texts = space.texts[start : start + 20_000]
        ids = torch.tensor([task.encode(t) + [task.tokenizer.pad_id] * (12 - len(t)) for t in texts])  # 14 wide
        lengths = torch.tensor([len(t) + 2 for t in texts])  # BOS, the characters, EOS
        with torch.no_grad():
            hidden = tiny_addition.model(input_ids=ids, output_hidden_states=True).hidden_states[1]  # (N, T, d)
        distance = (hidden - query).norm(dim=-1) / query.norm()  # (N, T)
        before_eos = torch.arange(ids.shape[1])[None, :] < (lengths - 1)[:, None]
        truth[start : start + len(texts)] = distance.masked_fill(~before_eos, float("inf")).min(-1).values
    torch.testing.assert_close(result.distances, truth, atol=1e-4, rtol=0)
    assert result.n_members == int((truth <= epsilon).sum())
    # The members listed are the 25 nearest (ties in any order).
    kth_nearest = float(truth.sort().values[24])
    listed = torch.tensor([space.texts.index(m.text) for m in result.members])
    assert len(listed) == 25 and bool((truth[listed] <= kth_nearest + 1e-4).all())
