"""The whitened distance: the estimate, its cache beside the model, and readings that use it."""

from __future__ import annotations

import json
import logging

import torch

from inversionview.cli import main
from inversionview.exact.preimage import exact_preimage
from inversionview.probed import load_probed
from inversionview.probed.whitening import estimate, whitening_for
from tests.commands import cli_args

QUERY = {"input": "615+861=1476", "position": 8, "site": "blocks.1.hook_resid_post"}


def test_whitening_makes_the_covariance_the_identity():
    torch.manual_seed(0)
    scales = torch.logspace(-0.5, 0.5, 16)  # directions that vary a hundred times more than others (in variance)
    mixing = torch.linalg.qr(torch.randn(16, 16))[0]
    vectors = (torch.randn(20_000, 16) * scales) @ mixing + 3.0
    whitening = estimate(vectors)
    white = whitening.apply(vectors)
    assert white.mean(0).abs().max() < 1e-3
    torch.testing.assert_close(white.T @ white / len(white), torch.eye(16), atol=0.02, rtol=0)
    assert whitening.shrinkage < 0.01  # 20,000 vectors in 16 dimensions need next to no shrinkage
    # Shrinkage lifts the smallest variances, so a spectrum far wider than the sample can pin is
    # whitened only in part: 1e-4 against 100 here.
    steep = (torch.randn(20_000, 16) * torch.logspace(-2, 1, 16)) @ mixing
    spread = (estimate(steep).apply(steep).var(0).max() / estimate(steep).apply(steep).var(0).min()).item()
    assert spread < steep.var(0).max().item() / steep.var(0).min().item()
    assert estimate(vectors[:20]).shrinkage > whitening.shrinkage  # 20 need more


def test_whitened_preimage_differs_and_is_recorded(tiny_probed, tiny_probed_dir, caplog):
    # Counting's space is sampled (5,000 inputs here); addition's 810,000 are in benchmarks/distance_geometry.py.
    query = ("vvzccvczvv|v:5", -2, "blocks.1.hook_resid_post")
    options = {"sample_size": 5_000, "limit": 0}
    caplog.set_level(logging.WARNING)
    whitened = exact_preimage(tiny_probed, *query, metric="whitened", epsilon=0.3, **options)
    euclidean = exact_preimage(tiny_probed, *query, metric="euclidean", epsilon=0.3, **options)
    assert whitened.n_members != euclidean.n_members
    settings = whitened.to_dict()["settings"]
    assert settings["metric"] == "whitened" and settings["whitening"]["n"] == 20_000
    assert euclidean.to_dict()["settings"]["whitening"] is None
    # Estimated once, cached beside the model with its N and date.
    cached = tiny_probed_dir / "whitening" / "blocks.1.hook_resid_post.json"
    record = json.loads(cached.read_text())
    assert record["n"] == 20_000 and record["date"] == settings["whitening"]["date"]
    assert caplog.text.count("estimating the covariance") == 1
    reloaded = whitening_for(load_probed(str(tiny_probed_dir)), tiny_probed.site(query[2]))
    assert reloaded.n == 20_000


def test_invert_whitened_and_a_corrupt_cache(tiny_addition_dir, tiny_addition_decoder_dir, capsys):
    query = {**QUERY, "samples": 20, "metric": "whitened", "json": True}
    args = cli_args("invert", probed=tiny_addition_dir, decoder=tiny_addition_decoder_dir, **query)
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["metric"] == "whitened" and result["settings"]["whitening"]["n"] == 20_000
    cached = tiny_addition_dir / "whitening" / "blocks.0.hook_attn_out.safetensors"
    assert main([*args, "--site", "blocks.0.hook_attn_out"]) == 0  # estimates this site's
    capsys.readouterr()
    cached.write_bytes(b"not a safetensors file")
    from inversionview.probed import whitening

    whitening._LOADED.clear()  # a new process would read the file again
    assert main([*args, "--site", "blocks.0.hook_attn_out"]) == 2
    err = capsys.readouterr().err
    assert "delete" in err and "corrupt" in err and len(err.strip().splitlines()) == 1
