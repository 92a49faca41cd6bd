"""Pieces of the views that need no page: which rows a view shows, the bounded reading cache, and the
page's settings as the ``view`` command passes them."""

from __future__ import annotations

import pytest

from inversionview.inversion.result import InversionResult, Query, Sample, Settings
from inversionview.views.cache import LeastRecentlyUsed
from inversionview.views.rows import EPSILON_LINE, shown_rows
from inversionview.views.server import ViewerSettings


def reading(distances: list[float], epsilon: float = 0.1) -> InversionResult:
    samples = [
        Sample(f"s{i}", ["B", f"s{i}"], d, 1, d <= epsilon, [0.0, 0.0], [0.0, d], 1.0, 0.0)
        for i, d in enumerate(distances)
    ]
    settings = Settings("m", "h", "d", len(samples), 0, "euclidean", epsilon, "auto", [])
    inside = sum(s.in_preimage for s in samples) / len(samples)
    return InversionResult(Query("q", ["B", "q"], 1, "site"), settings, samples, inside, 0.0)


def test_the_epsilon_line_sits_before_the_first_sample_outside():
    rows, left_out = shown_rows(reading([0.0, 0.05, 0.2, 0.3]), limit=10)
    assert [row if row is EPSILON_LINE else row[0].text for row in rows] == ["s0", "s1", EPSILON_LINE, "s2", "s3"]
    assert left_out == 0


def test_the_epsilon_line_closes_a_view_of_samples_all_inside_and_says_what_is_left_out():
    rows, left_out = shown_rows(reading([0.0, 0.01, 0.02, 0.5]), limit=2)
    assert rows[-1] is EPSILON_LINE and len(rows) == 3 and left_out == 2


def test_the_reading_cache_keeps_at_most_its_bound_dropping_the_least_recently_used():
    cache = LeastRecentlyUsed(max_entries=2)
    made = []

    def maker(key):
        return lambda: made.append(key) or key.upper()

    assert cache.get_or_make("a", maker("a")) == "A"
    cache.get_or_make("b", maker("b"))
    assert cache.get_or_make("a", maker("a")) == "A"  # held: not made again, and now the most recent
    cache.get_or_make("c", maker("c"))  # over the bound: "b", used longest ago, goes
    assert made == ["a", "b", "c"] and len(cache) == 2 and "b" not in cache and "a" in cache
    with pytest.raises(ValueError):
        LeastRecentlyUsed(max_entries=0)


def test_viewer_settings_round_trip_through_the_environment():
    settings = ViewerSettings(probed="runs/x", decoder=None, load_options={"task": "counting"}, models_dir="/m")
    assert ViewerSettings.from_environment(settings.to_environment()) == settings
    assert ViewerSettings.from_environment({}) == ViewerSettings()
