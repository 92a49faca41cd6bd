"""Bad inputs a new user met: each ends in a one-line error and exit status 2, before costly work."""

from __future__ import annotations

import re

import pytest

from inversionview.cli import main
from inversionview.errors import UserError, as_flags
from tests.commands import cli_args

QUERY = {"input": "vvzccvczvv|v:5", "position": -2, "site": "blocks.1.hook_resid_post"}


def refused(capsys, args: list[str], message: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


@pytest.mark.parametrize("epsilon", ["nan", "inf", "-0.1", "abc"])
def test_an_epsilon_that_is_not_a_finite_number_is_refused_before_the_model_loads(epsilon, capsys):
    refused(capsys, [*cli_args("invert", **QUERY), f"--epsilon={epsilon}"], "--epsilon")


def test_a_source_shorter_than_the_input_is_refused_before_the_metric_reads_it(capsys):
    args = cli_args("patch", input="vvzccvczvvvzvcvc|v:8", source="vzc|v:1", patch="blocks.0.hook_resid_pre@15")
    refused(capsys, args, "the source has 8 positions, the input 21")


def test_a_feature_that_fails_on_the_query_names_itself_what_it_raised_and_the_input(tmp_path, capsys):
    features = tmp_path / "mine.py"
    features.write_text("def boom(text, position):\n    return {}['x']\n")
    args = cli_args("invert", **QUERY, features=features)
    refused(capsys, args, r"feature boom raised KeyError: 'x' on the query 'vvzccvczvv\|v:5'")


def test_an_exact_pass_that_would_take_too_long_is_refused_with_its_estimate():
    from inversionview.exact.preimage import exact_preimage
    from inversionview.probed import load_probed

    with pytest.raises(UserError, match=r"over all 5,000 inputs would take about .*`space_sample`.*`yes`"):
        exact_preimage(load_probed("counting"), *QUERY.values(), sample_size=5000, max_seconds=1e-6)


def test_library_messages_name_parameters_and_the_command_line_shows_its_flags():
    assert (
        as_flags("sample fewer (`space_sample`), or go ahead (`yes`)")
        == "sample fewer (--space-sample), or go ahead (--yes)"
    )
    assert as_flags("`12` and `Name` stay") == "`12` and `Name` stay"


def test_a_parameter_whose_flag_has_another_name_is_shown_as_that_flag(tmp_path, capsys):
    """The parser's own map from destination to flag: `features_file` is --features, `patches` --patch."""
    from inversionview.cli import build_parser

    flags = build_parser().parse_args(cli_args("invert", **QUERY)).option_flags()
    assert flags["features_file"] == "--features" and flags["probed"] == "--probed"
    patch = cli_args("patch", input=QUERY["input"], source=QUERY["input"], patch="blocks.0.hook_resid_pre@1")
    assert build_parser().parse_args(patch).option_flags()["patches"] == "--patch"
    refused(capsys, [*cli_args("invert", **QUERY), "--features", str(tmp_path / "none.txt")], r"^error: --features ")


def test_a_models_folder_that_does_not_exist_is_refused_before_the_page_starts(capsys):
    refused(capsys, ["view", "--models-dir", "/nonexistent"], "--models-dir /nonexistent is not a directory")
