"""Pieces of the views that need no page: which rows a view shows, the bounded reading cache, and the
page's settings as the ``view`` command passes them."""

from __future__ import annotations

import re

import pytest

from inversionview.inversion.result import InversionResult, Query, Sample, Settings
from inversionview.views.cache import LeastRecentlyUsed
from inversionview.views.html_render import CSS, render_result
from inversionview.views.rows import EPSILON_LINE, SideCounts, distance_text, shown_rows, side_summary
from inversionview.views.server import ViewerSettings
from inversionview.views.terminal import training_line


def reading(distances: list[float], epsilon: float = 0.1) -> InversionResult:
    samples = [
        Sample(f"s{i}", ["B", f"s{i}"], d, 1, d <= epsilon, [0.0, 0.0], [0.0, d], 1.0, 0.0)
        for i, d in enumerate(distances)
    ]
    settings = Settings("m", "h", "d", len(samples), 0, "euclidean", epsilon, "auto", [])
    inside = sum(s.in_preimage for s in samples) / len(samples)
    return InversionResult(Query("q", ["B", "q"], 1, "site"), settings, samples, inside, 0.0)


def texts(rows) -> list:
    return [row if row is EPSILON_LINE else row[0].text for row in rows]


def test_a_view_shows_both_sides_of_epsilon_with_the_line_between():
    rows, counts = shown_rows(reading([0.0, 0.05, 0.2, 0.3]), limit=10)
    assert texts(rows) == ["s0", "s1", EPSILON_LINE, "s2", "s3"]
    assert counts == SideCounts(inside=2, outside=2, inside_hidden=0, outside_hidden=0, searched=0)


def test_the_nearest_non_members_keep_their_rows_however_many_members_there_are():
    """The problem as found: 60 rows of members, the ε line under them, and no non-member shown."""
    result = reading([0.01 * i for i in range(10)] + [0.2 + 0.01 * i for i in range(5)])
    rows, counts = shown_rows(result, limit=8)  # a quarter of the rows go to the outside by default
    assert texts(rows) == ["s0", "s1", "s2", "s3", "s4", "s5", EPSILON_LINE, "s10", "s11"]
    assert (counts.inside_hidden, counts.outside_hidden) == (4, 3)
    rows, _ = shown_rows(result, limit=8, outside=0)
    assert texts(rows)[-1] is EPSILON_LINE and len(rows) == 9
    rows, _ = shown_rows(reading([0.0] + [0.2 + 0.01 * i for i in range(10)]), limit=8)
    assert texts(rows)[:2] == ["s0", EPSILON_LINE] and len(rows) == 9  # rows one side does not need go to the other


def test_a_view_with_no_sample_outside_says_so_plainly():
    rows, counts = shown_rows(reading([0.0, 0.01, 0.02]), limit=10)
    assert texts(rows) == ["s0", "s1", "s2", EPSILON_LINE]
    assert "no sample fell outside" in side_summary(counts)
    html = render_result(reading([0.0, 0.01, 0.02]))
    assert "no sample fell outside" in html and 'class="iv-legend"' in html


def test_the_html_view_has_a_legend_and_wraps_long_samples():
    html = render_result(reading([0.0, 0.3]))
    assert "more / less likely" in html and "ε = 0.1: members above, non-members below" in html
    assert "white-space: pre-wrap" in CSS and "overflow-wrap: anywhere" in CSS


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


def test_near_epsilon_a_distance_prints_enough_digits_to_show_its_side_of_the_line():
    assert distance_text(0.05, 0.1) == "0.050" and distance_text(0.1, 0.1) == "0.100"
    assert float(distance_text(0.10004, 0.1)) > 0.1 and float(distance_text(0.09996, 0.1)) < 0.1
    assert distance_text(0.1000004, 0.1) == "0.1000004"


def test_members_from_the_boundary_search_are_not_counted_as_members():
    result = reading([0.0, 0.05, 0.2])
    result.samples[1].boundary_search = True
    rows, counts = shown_rows(result, limit=10)
    assert texts(rows) == ["s0", "s1", EPSILON_LINE, "s2"]  # shown, flagged
    assert (counts.inside, counts.searched) == (1, 1)
    assert side_summary(counts) == "1 distinct inside ε (and 1 more from the boundary search), 1 outside"


def test_outputs_are_checked_before_any_work(tmp_path, capsys):
    from inversionview.cli import main

    report = ["report", "--input", "vvzccvczvv|v:5", "--position", "-2", "--site", "blocks.1.hook_resid_post"]
    for args, message in [
        ([*report, "-o", str(tmp_path / "missing" / "view.html")], "the folder .*missing does not exist"),
        (["fortunes", "--out", str(tmp_path / "missing" / "f.txt")], "the folder .*missing does not exist"),
        (["head-share", "--probed", "facts", "--plot", str(tmp_path / "missing" / "h.png")], "does not exist"),
        (["train-decoder", "--out", "/proc/nope", "--steps", "1"], "cannot create the folder /proc/nope"),
        (["train-decoder", "--out", str(tmp_path / "file"), "--steps", "1"], "file is a file; name a directory"),
    ]:
        (tmp_path / "file").write_text("")
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "missing").exists()


def test_loading_a_model_draws_no_progress_bar(capfd):
    from inversionview.probed import load_probed

    load_probed("counting")
    assert "Loading weights" not in capfd.readouterr().err


def test_json_figures_carry_no_digits_float32_never_had_and_the_terminal_has_a_legend():
    from rich.console import Console

    from inversionview.views.terminal import render

    result = reading([0.7718999981880188])
    result.samples[0].probability_change = [0.0, 0.12345678912]
    sample = result.to_dict()["samples"][0]
    assert sample["distance"] == 0.7719 and sample["probability_change"] == [0.0, 0.123457]
    console = Console(record=True, width=200)
    render(result, console)
    assert "red / blue: the query made the token more / less likely" in console.export_text()


def test_a_narrow_explain_map_keeps_its_whole_title(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from inversionview.interpret.explain_map import ExplainMap
    from inversionview.views.plots import explain_map_figure

    table = ExplainMap(["blocks.0.hook_resid_post"], [":"], [[{"count": 1.0}]], n=3)
    shown = []
    real = plt.Axes.set_title
    plt.Axes.set_title = lambda self, text, **kwargs: shown.append(text) or real(self, text, **kwargs)
    try:
        explain_map_figure(table, tmp_path / "map.png", "a long title for the counting model")
    finally:
        plt.Axes.set_title = real
    (title,) = shown
    assert " ".join(title.split()) == "a long title for the counting model: features kept by ≥ 50% of 3 queries"
    assert max(len(line) for line in title.splitlines()) <= 12 * 3.1  # wrapped to the 3.1-inch figure


def test_the_training_line_names_the_queries_its_precision_rests_on_and_its_error():
    summary = {"steps": 2079, "seconds": 119.4, "precision": 0.214, "queries": 32, "precision_se": 0.0415}
    summary["lowest_site"] = {"site": "blocks.1.hook_resid_post", "precision": 0.023}
    line = training_line(summary, "runs/d")
    assert line == (
        "saved decoder to runs/d: 2,079 steps, 2.0 min, mean precision 21.4% ± 4.2% on 32 held-out queries "
        "a site (lowest blocks.1.hook_resid_post 2.3%)"
    )
    # Histories written before the error, and before the query count, were recorded.
    assert "21.4% on 32 held-out" in training_line({**summary, "precision_se": None}, "runs/d")
    older = training_line({**summary, "queries": None, "precision_se": None}, "runs/d")
    assert older.endswith("mean precision 21.4% (lowest blocks.1.hook_resid_post 2.3%)")
    assert training_line({**summary, "precision": None}, "runs/d") == "saved decoder to runs/d: 2,079 steps, 2.0 min"
