"""Exact ε-preimages and decoder completeness, on tiny real models."""

import json

import matplotlib.image
import pytest
import torch

from inversionview.cli import main
from inversionview.exact.completeness import completeness, recall_checkpoints
from inversionview.exact.preimage import exact_preimage, exact_preimages
from inversionview.exact.space import input_space
from inversionview.probed.distance import best_positions
from inversionview.probed.verify import query_activation, verify_ids
from inversionview.tasks import get_task


def test_addition_space_is_every_pair():
    space = input_space(get_task("addition"))
    assert space.exhaustive and space.size == 900 * 900
    assert space.texts[0] == "100+100=200" and space.texts[-1] == "999+999=1998"
    assert len(set(space.texts)) == space.size


def test_counting_space_is_a_stated_sample():
    space = input_space(get_task("counting"), sample_size=3000, seed=5)
    assert not space.exhaustive and "seeded sample" in space.description and "seed 5" in space.description
    assert 2900 <= space.size <= 3000  # duplicates removed


def test_token_embedding_preimage_is_exact(tiny_addition):
    """At resid_pre of layer 0 the activation is token + position: with a tiny ε, the members are
    exactly the inputs with the same first digit."""
    result = exact_preimage(tiny_addition, "615+861=1476", 1, "blocks.0.hook_resid_pre", epsilon=1e-5, limit=5)
    assert result.n_members == 100 * 900
    assert all(m.text.startswith("6") and m.best_position == 1 for m in result.members)
    assert result.space_size == 810_000 and result.exhaustive


def test_exact_members_agree_with_direct_verification(tiny_addition):
    """Two queries at different sites from one pass over the space: each one's members and distances
    are those that verifying the members one query at a time gives."""
    queries = [("615+861=1476", 8, "blocks.1.hook_resid_post"), ("472+389=861", 3, "blocks.0.hook_attn_out")]
    results = exact_preimages(tiny_addition, queries, epsilon=0.3, limit=50)
    space = input_space(tiny_addition.task)
    index = {t: i for i, t in enumerate(space.texts)}
    for (text, position, site), result in zip(queries, results, strict=True):
        assert result.query_text == text and result.site == site and result.members
        parsed = tiny_addition.site(site)
        query = query_activation(tiny_addition, parsed, text, position)
        rows = torch.tensor([index[m.text] for m in result.members])
        best, _ = best_positions(verify_ids(tiny_addition, parsed, space.ids[rows], query, "euclidean"))
        torch.testing.assert_close(best, torch.tensor([m.distance for m in result.members]), atol=1e-4, rtol=0)
        assert [m.distance for m in result.members] == sorted(m.distance for m in result.members)
        assert result.n_members == int((result.distances <= 0.3).sum())
        assert result.distances[index[text]] == 0  # the query's own input (not always among the first 50)


def test_recall_checkpoints():
    assert recall_checkpoints(100) == [100]
    assert recall_checkpoints(2500) == [100, 1000, 2500]
    assert recall_checkpoints(10_000) == [100, 1000, 10_000]


def test_completeness_counts_members_found(tiny_addition, tiny_addition_decoder_dir):
    from inversionview.decoder.store import load_decoder

    decoder = load_decoder(tiny_addition_decoder_dir, tiny_addition)
    result = completeness(tiny_addition, decoder, "615+861=1476", 0, "blocks.0.hook_resid_post", samples=300)
    # Every input has the same activation at BOS: all samples that are inputs of the space are members.
    assert result.n_members == 810_000
    assert result.precision == 1.0
    in_space = set(result.sample_texts) & set(input_space(tiny_addition.task).texts)
    assert result.recall["300"] == pytest.approx(len(in_space) / 810_000)
    assert set(result.recall) == {"100", "300"}


def test_distinct_completeness_finds_a_new_input_with_every_sample(tiny_addition, tiny_addition_decoder_dir):
    from inversionview.decoder.schedule import parse_schedule
    from inversionview.decoder.store import load_decoder

    decoder = load_decoder(tiny_addition_decoder_dir, tiny_addition)
    query = ("615+861=1476", 0, "blocks.0.hook_resid_post")
    plain = completeness(tiny_addition, decoder, *query, samples=300)
    distinct = completeness(tiny_addition, decoder, *query, samples=300, schedule=parse_schedule("distinct"))
    assert len(set(distinct.sample_texts)) == 300 and distinct.schedule == "distinct T=1"
    # At BOS the whole space is the preimage, so each distinct sample that is an input is a new member.
    in_space = set(input_space(tiny_addition.task).texts)
    assert distinct.recall["300"] == pytest.approx(sum(t in in_space for t in distinct.sample_texts) / 810_000)
    assert distinct.recall["300"] >= plain.recall["300"]


def test_completeness_cli_json_and_plot(capsys, tiny_addition_dir, tiny_addition_decoder_dir, tmp_path):
    plot = tmp_path / "scatter.png"
    code = main(
        [
            "completeness",
            "--probed",
            str(tiny_addition_dir),
            "--decoder",
            str(tiny_addition_decoder_dir),
            "--input",
            "615+861=1476",
            "--position",
            "8",
            "--site",
            "blocks.0.hook_resid_post",
            "--samples",
            "200",
            "--epsilon",
            "0.5",
            "--plot",
            str(plot),
            "--plot-points",
            "3000",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert {"n_members", "precision", "recall", "seconds"} <= set(result)
    assert set(result["recall"]) == {"100", "200"}
    image = matplotlib.image.imread(plot)
    height, width = image.shape[:2]
    assert (width, height) == (770, 550)
    red = (image[..., 0] > 0.7) & (image[..., 1] < 0.35) & (image[..., 2] < 0.35)
    grey = (abs(image[..., 0] - image[..., 1]) < 0.05) & (image[..., 0] > 0.3) & (image[..., 0] < 0.8)
    assert red.sum() > 20 and grey.sum() > 200  # member points and non-member points were drawn


def test_exact_cli(capsys, tiny_addition_dir):
    code = main(
        [
            "exact",
            "--probed",
            str(tiny_addition_dir),
            "--input",
            "615+861=1476",
            "--position",
            "1",
            "--site",
            "blocks.0.hook_resid_pre",
            "--epsilon",
            "0.00001",
            "--limit",
            "3",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["n_members"] == 90_000 and result["space_size"] == 810_000
    assert len(result["members"]) == 3 and result["seconds"] > 0
    code = main(
        [
            "exact",
            "--probed",
            str(tiny_addition_dir),
            "--input",
            "615+86=701",
            "--position",
            "1",
            "--site",
            "blocks.0.hook_resid_pre",
        ]
    )
    assert code == 2 and "not an addition input" in capsys.readouterr().err


def test_completeness_refuses_a_plot_it_cannot_write_before_any_work(capsys, tmp_path):
    """The path is checked first: a model that does not exist is never reached."""
    query = ["--input", "615+861=1476", "--position", "8", "--site", "blocks.0.hook_resid_post"]
    directory = tmp_path / "dir.png"
    directory.mkdir()
    for plot, needle in ((tmp_path / "scatter.svg", "name a .png file"), (directory, "is a folder; name a file")):
        code = main(["completeness", "--probed", str(tmp_path / "no-such-model"), *query, "--plot", str(plot)])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and "no probed model" not in err, err


def test_an_exact_preimage_keeps_the_input_space_it_was_computed_over():
    """A seeded sample of another size is not the default space: members come from its own."""
    from inversionview.exact.preimage import exact_preimage
    from inversionview.probed import load_probed

    result = exact_preimage(
        load_probed("counting"), "vvzccvczvv|v:5", -2, "blocks.1.hook_resid_post", sample_size=3000, seed=5
    )
    assert result.input_space.size == result.space_size == 3000 and not result.exhaustive
    members = result.member_texts()
    assert len(members) == result.n_members and members <= set(result.input_space.texts)
