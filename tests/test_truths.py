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


def test_exact_preimage_distances_match_a_brute_force_computation(tiny_addition):
    text, position = "615+861=1476", 8
    result = exact_preimage(tiny_addition, text, position, SITE, epsilon=0.3, limit=10)
    space = input_space(tiny_addition.task)
    query = query_vector(tiny_addition, text, position)
    rows = random.Random(1).sample(range(space.size), 300) + [space.texts.index(m.text) for m in result.members]
    for row in rows:
        truth = float(brute_force_distances(tiny_addition, space.texts[row], query).min())
        assert float(result.distances[row]) == pytest.approx(truth, abs=1e-4)
    assert all(m.distance <= 0.3 for m in result.members)
