"""Pure functions: distances, best positions, schedules, colours."""

import math

import pytest
import torch

from inversionview.decoder.schedule import parse_schedule
from inversionview.errors import UserError
from inversionview.probed.distance import best_positions, position_distances
from inversionview.probed.query import resolve_position
from inversionview.probed.verify import queryable, sequence_lengths
from inversionview.views.colors import bar, color_rgb


def test_normalized_euclidean_and_cosine():
    query = torch.tensor([3.0, 4.0])
    acts = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]]])
    valid = torch.tensor([[True, True, False]])
    euclid = position_distances(query, acts, valid, "euclidean")
    assert euclid[0, 0] == 0 and math.isclose(float(euclid[0, 1]), 1.0) and math.isinf(euclid[0, 2])
    cos = position_distances(
        query, torch.tensor([[[6.0, 8.0], [-3.0, -4.0], [4.0, -3.0]]]), torch.ones(1, 3, dtype=torch.bool), "cosine"
    )
    torch.testing.assert_close(cos, torch.tensor([[0.0, 2.0, 1.0]]))


def test_one_query_per_row():
    queries = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    acts = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    dist = position_distances(queries, acts, torch.ones(2, 1, dtype=torch.bool), "euclidean")
    torch.testing.assert_close(dist, torch.tensor([[0.0], [0.5]]))


def test_best_position_is_the_minimum():
    best, where = best_positions(torch.tensor([[0.5, 0.2, float("inf")], [0.1, 0.3, 0.4]]))
    assert where.tolist() == [1, 0]
    torch.testing.assert_close(best, torch.tensor([0.2, 0.1]))


def test_unknown_metric():
    with pytest.raises(ValueError):
        position_distances(torch.ones(2), torch.ones(1, 1, 2), torch.ones(1, 1, dtype=torch.bool), "manhattan")


def test_queryable_positions_stop_before_eos():
    ids = torch.tensor([[9, 1, 2, 8, 7, 7], [9, 1, 1, 1, 1, 8]])  # BOS=9, EOS=8, PAD=7
    assert sequence_lengths(ids, 8).tolist() == [4, 6]
    assert queryable(ids, 8).tolist() == [[True, True, True, False, False, False], [True] * 5 + [False]]


def test_positions_are_numbers_from_either_end_or_the_task_s_names():
    from inversionview.probed import load_probed

    probed, text = load_probed("counting"), "vvzccvczvv|v:5"  # 15 positions, BOS = 0
    assert resolve_position(probed, text, -1) == 14 and resolve_position(probed, text, 0) == 0
    assert resolve_position(probed, text, ":") == resolve_position(probed, text, -2) == 13
    with pytest.raises(UserError, match="out of range"):
        resolve_position(probed, text, 15)
    with pytest.raises(UserError, match="out of range"):
        resolve_position(probed, text, -16)
    with pytest.raises(UserError, match="no position named 'END'.*named positions: \\|, query letter, :, count"):
        resolve_position(probed, text, "END")


def test_schedules():
    auto = parse_schedule("auto")
    assert sum(n for _, _, n in auto.split(1000)) == 1000
    assert parse_schedule(None, temperature=0.7).pairs == ((0.7, 0.0),)
    assert parse_schedule("1:0.05,0.5").pairs == ((1.0, 0.05), (0.5, 0.0))
    assert parse_schedule("1,2").split(3) == [(1.0, 0.0, 2), (2.0, 0.0, 1)]
    with pytest.raises(UserError):
        parse_schedule("hot:0")
    with pytest.raises(UserError):
        parse_schedule(None, temperature=-1)


def test_colors_and_bars():
    assert color_rgb(0.0) == (255, 255, 255)
    assert color_rgb(1.0) == (255, 0, 0) and color_rgb(-1.0) == (0, 0, 255)
    assert bar(0.05, 0.2, width=8) == "██······"
    assert bar(5.0, 0.2, width=4) == "████"
