"""Activation patching, checked against truths that hold whatever the model has learned."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from inversionview.causal.metrics import task_metric
from inversionview.causal.patch import patch
from inversionview.cli import main
from inversionview.probed.model import ProbedModel
from inversionview.probed.patching import hook_values, patched_logits, position_masks
from inversionview.tasks import get_task
from tests.commands import cli_args

TEXT, SOURCE = "vvzccvczvv|v:5", "vvzccvczzv|v:4"  # one letter before '|' changed: the count of 'v' drops


@pytest.fixture(scope="module")
def tiny_llama() -> ProbedModel:
    """A Llama-family model with the counting task's vocabulary, built here (random weights)."""
    task = get_task("counting")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=task.tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    return ProbedModel(transformers.LlamaForCausalLM(config).eval(), task, content_hash="", source="tiny-llama")


@pytest.fixture(params=["gpt2", "llama"])
def model(request, tiny_probed, tiny_llama) -> ProbedModel:
    return tiny_probed if request.param == "gpt2" else tiny_llama


def logits_of(probed: ProbedModel, text: str) -> torch.Tensor:
    ids, _ = probed.encode_batch([text])
    with torch.no_grad():
        return probed.model(input_ids=ids, use_cache=False).logits[0]


def patched(probed: ProbedModel, pairs: list[tuple[str, int]], text: str = TEXT, source: str = SOURCE) -> torch.Tensor:
    ids, _ = probed.encode_batch([text, source])
    masks = position_masks([[(probed.site(site), position) for site, position in pairs]], ids.shape[1])
    values = hook_values(probed.model, probed.layout, ids[1:], sorted(masks))
    return patched_logits(probed.model, probed.layout, ids[:1], masks, values)[0]


def test_a_source_equal_to_the_input_changes_nothing(model):
    every_site = [(site.name, 13) for site in model.sites() if site.kind != "hook_resid_mid"]
    torch.testing.assert_close(patched(model, every_site, source=TEXT), logits_of(model, TEXT), atol=0, rtol=0)
    result = patch(model, TEXT, TEXT, [("blocks.1.hook_resid_post", 13)])
    assert result.effect == 0.0 and result.patched == result.clean


def test_patching_the_embeddings_everywhere_gives_the_source_run(model):
    everywhere = [("blocks.0.hook_resid_pre", position) for position in range(15)]
    torch.testing.assert_close(patched(model, everywhere), logits_of(model, SOURCE), atol=1e-5, rtol=0)
    assert patch(model, TEXT, SOURCE, everywhere).effect == pytest.approx(1.0, abs=1e-4)


def test_every_head_of_a_layer_is_the_layers_attention_output(model):
    for layer in range(2):
        heads = [(f"blocks.{layer}.attn.hook_result.{h}", 12) for h in range(model.n_heads)]
        whole = [(f"blocks.{layer}.hook_attn_out", 12)]
        torch.testing.assert_close(patched(model, heads), patched(model, whole), atol=1e-5, rtol=0)


def test_patching_leaves_the_model_as_it_was(tiny_probed):
    before = logits_of(tiny_probed, TEXT)
    ids, _ = tiny_probed.encode_batch([TEXT])
    site = tiny_probed.site("blocks.0.hook_attn_out")
    wrong = {site: torch.zeros(1, ids.shape[1], 3)}  # a source of the wrong width fails inside the run
    with pytest.raises(RuntimeError):
        patched_logits(
            tiny_probed.model, tiny_probed.layout, ids, {site: torch.ones(1, ids.shape[1], dtype=bool)}, wrong
        )
    torch.testing.assert_close(logits_of(tiny_probed, TEXT), before, atol=0, rtol=0)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny_probed.model.modules())


def test_task_metrics_read_each_tasks_answer(tiny_probed, tiny_addition):
    counting = task_metric(tiny_probed, TEXT, SOURCE)
    tok = tiny_probed.task.tokenizer
    assert counting.position == 13 and (counting.answer, counting.alt) == (tok.encode("5")[0], tok.encode("4")[0])
    addition = task_metric(tiny_addition, "615+861=1476", "615+871=1486")
    assert addition.position == 10 and "A3" in addition.description  # A3 is the first digit that differs


def test_the_patch_command_prints_the_promised_json(capsys, tiny_probed_dir):
    args = cli_args("patch", probed=tiny_probed_dir, input=TEXT, source=SOURCE, json=True)
    assert main([*args, "--patch", "blocks.0.hook_attn_out@-2", "--patch", "blocks.1.attn.hook_result.0@13"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"input", "source", "patches", "metric", "clean", "patched", "source_prediction", "effect"}
    assert result["patches"] == [
        {"site": "blocks.0.hook_attn_out", "position": 13},
        {"site": "blocks.1.attn.hook_result.0", "position": 13},
    ]
    assert set(result["clean"]) == {"prediction", "logit_diff"} == set(result["patched"])


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"source": "vvzccvczv|v:4"}, "the source has 14 positions, the input 15"),
        ({"patch": "blocks.9.hook_attn_out@3"}, "unknown site 'blocks.9.hook_attn_out'"),
        ({"patch": "blocks.0.hook_attn_out@40"}, "position 40 is out of range"),
        ({"patch": "blocks.0.hook_attn_out"}, "write SITE@POSITION"),
        ({"patch": "blocks.0.hook_resid_mid@3"}, "patch blocks.0.hook_attn_out instead"),
    ],
)
def test_bad_patches_are_one_line_errors(capsys, tiny_probed_dir, options, needle):
    args = {"probed": tiny_probed_dir, "input": TEXT, "source": SOURCE, "patch": "blocks.0.hook_attn_out@3", **options}
    assert main(cli_args("patch", **args)) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_contrasts_change_the_answer_and_keep_the_length(tiny_probed, tiny_addition):
    from inversionview.causal.patch import contrast_pairs

    for probed in (tiny_probed, tiny_addition):
        for text, source in contrast_pairs(probed, 30, seed=1):
            probed.task.validate(source)
            assert len(probed.task.encode(source)) == len(probed.task.encode(text)) and source != text
            assert text.split("=")[-1].split(":")[-1] != source.split("=")[-1].split(":")[-1]  # the answer moved


def test_a_scan_of_a_one_head_model_finds_the_head_where_the_attention_is(capsys, tmp_path):
    """The bundled counting model has one head a layer: patching it is patching the attention output,
    cell for cell."""
    plot = tmp_path / "scan.png"
    assert main(["patch-scan", "--probed", "counting", "--n", "20", "--json", "--plot", str(plot)]) == 0
    scan = json.loads(capsys.readouterr().out)
    assert set(scan) == {"positions", "components", "effect", "n"} and scan["n"] == 20
    assert scan["positions"][:4] == ["|", "query letter", ":", "count"] and scan["positions"][-1] == "other"
    assert len(scan["effect"]) == len(scan["positions"]) and all(
        len(r) == len(scan["components"]) for r in scan["effect"]
    )
    for layer in range(2):
        head = scan["components"].index(f"blocks.{layer}.attn.hook_result.0")
        whole = scan["components"].index(f"blocks.{layer}.hook_attn_out")
        for row in scan["effect"]:
            assert row[head] == pytest.approx(row[whole], abs=1e-3)
    assert plot.stat().st_size > 10_000


def test_a_scan_refuses_no_pairs_and_unknown_components(capsys):
    assert main(["patch-scan", "--n", "0"]) == 2
    assert "--n: must be at least 1" in capsys.readouterr().err
    assert main(["patch-scan", "--n", "5", "--components", "blocks.7.hook_mlp_out"]) == 2
    err = capsys.readouterr().err
    assert "unknown site 'blocks.7.hook_mlp_out'" in err and len(err.strip().splitlines()) == 1


def test_cumulative_scans_end_with_every_head_patched_whichever_the_order(tiny_probed):
    from inversionview.causal.scan import cumulative_scan

    forward = cumulative_scan(tiny_probed, 12, "forward", seed=3)
    backward = cumulative_scan(tiny_probed, 12, "backward", seed=3)
    assert forward.components[0] == "blocks.0.attn.hook_result.0" and len(forward.components) == 4
    assert backward.components[0] == "blocks.1.attn.hook_result.1"
    assert forward.effect[0][-1] == pytest.approx(backward.effect[0][-1], abs=1e-6)  # the same set, all heads


def test_a_report_can_carry_a_patching_scan_and_stays_self_contained(capsys, tmp_path):
    report = tmp_path / "report.html"
    argv = ["report", "--input", TEXT, "--position", "-2", "--site", "blocks.1.hook_resid_post", "--samples", "40"]
    assert main([*argv, "--scan", "10", "-o", str(report)]) == 0
    html = report.read_text()
    assert html.count('src="data:image/png;base64,') == 1 and "http://" not in html and "<script" not in html
    assert "a patching scan" in capsys.readouterr().out
