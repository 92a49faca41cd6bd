"""Which features a reading's preimage keeps: the verdicts, their sentence, and the user's own features."""

from __future__ import annotations

import json

import pytest

from inversionview.cli import main
from inversionview.decoder.store import load_decoder
from inversionview.interpret.explain import explain, verdict_of
from inversionview.inversion.invert import invert
from inversionview.probed import load_probed
from tests.commands import cli_args

QUERY = ("vvzccvczvv|v:5", -2)


@pytest.fixture(scope="module")
def counting():
    probed = load_probed("counting")
    return probed, load_decoder(None, probed)


def verdicts(result) -> dict[str, dict]:
    return {f["name"]: f for f in result.features}


def test_the_count_is_encoded_at_colon_after_layer_one_and_not_in_its_embedding(counting):
    probed, decoder = counting
    after = verdicts(explain(probed, invert(probed, decoder, *QUERY, "blocks.1.hook_resid_post", samples=300)))
    assert after["count"]["verdict"] == "encoded" and after["count"]["consistency"] >= 0.9
    assert after["count"]["baseline"] < 0.3 and after["count"]["query_value"] == "5"
    embedding = verdicts(explain(probed, invert(probed, decoder, *QUERY, "blocks.0.hook_resid_pre", samples=300)))
    assert embedding["count"]["verdict"] == "not"  # the embedding of ':' knows no count


def test_too_few_members_are_said_not_guessed(counting):
    probed, decoder = counting
    result = explain(probed, invert(probed, decoder, *QUERY, "blocks.1.hook_resid_post", samples=40, epsilon=1e-9))
    assert all(f["verdict"] == "too few members" for f in result.features)
    assert result.explanation.startswith("too few members")
    assert verdict_of(0.95, 0.9, 50) == "not"  # consistent, but no more than chance


def test_invert_explain_json_and_the_users_own_features(capsys, tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("def first_letter(text, position):\n    return text[0]\n\n\ndef _helper():\n    pass\n")
    args = cli_args("invert", input=QUERY[0], position=QUERY[1], site="blocks.1.hook_resid_post", samples=200)
    assert main([*args, "--features", str(mine), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    names = {f["name"] for f in result["features"]}
    assert {"count", "query_letter", "first_letter"} <= names and "_helper" not in names
    assert set(result["features"][0]) == {"name", "query_value", "consistency", "baseline", "verdict", "n_members"}
    assert "count = 5" in result["explanation"]
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('nope')\n")
    assert main([*args, "--features", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "running it failed (RuntimeError: nope)" in err and len(err.strip().splitlines()) == 1
