"""TransformerLens bridges as probed models: every site is the bridge's own activation, patching
goes through the bridge's hooks, and the product (train-decoder, invert, exact) runs on a native
bridge with a sequences task. Needs the lens extra (``pip install "inversionview[lens]"``)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

pytest.importorskip("transformer_lens")

import transformer_lens.model_bridge.sources.native  # noqa: E402, F401  (attaches boot_native)
from transformer_lens.config import TransformerBridgeConfig  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402

from inversionview.cli import main  # noqa: E402
from inversionview.exact.preimage import exact_preimage  # noqa: E402
from inversionview.probed import load_probed  # noqa: E402
from inversionview.probed.lens import LensProbedModel  # noqa: E402
from tests.commands import cli_args  # noqa: E402

TOKENS = "BOS,a,b,c,pad"
SEQUENCES = {"tokens": TOKENS, "bos": "BOS", "pad": "pad", "length": "2-4"}


def native(**shape) -> TransformerBridge:
    fields = {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_head": 8, "d_vocab": 5, "n_ctx": 8, "seed": 0}
    return TransformerBridge.boot_native(TransformerBridgeConfig(**fields | shape))


def gpt2_bridge(tmp_path) -> TransformerBridge:
    """A tiny GPT-2 with its own word-level tokenizer, saved and booted through boot_transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = TOKENS.split(",")
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="pad"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="BOS", eos_token="pad", pad_token="pad")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=5, n_positions=8, n_embd=16, n_layer=2, n_head=2)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return TransformerBridge.boot_transformers(str(tmp_path))


BRIDGES = {
    "native with LayerNorm and MLPs": lambda tmp_path: native(d_mlp=32, act_fn="gelu", normalization_type="LN"),
    "attention-only, no LayerNorm": lambda tmp_path: native(attn_only=True, normalization_type=None),
    "GPT-2 through boot_transformers": gpt2_bridge,
}


@pytest.fixture(params=list(BRIDGES))
def bridge_probed(request, tmp_path) -> LensProbedModel:
    return load_probed(BRIDGES[request.param](tmp_path), task="sequences", task_options=SEQUENCES)


def test_every_site_is_the_bridges_own_activation(bridge_probed):
    probed = bridge_probed
    ids, _ = probed.encode_batch(["abc", "ca", "bbab"])
    _, cache = probed.model.run_with_cache(ids)
    heads = [probed.site(f"blocks.{layer}.attn.hook_z.{h}") for layer in range(2) for h in range(2)]
    extra = [probed.site(name) for name in ("hook_pos_embed", "blocks.1.attn.hook_in")]
    sites = probed.sites() + heads + extra
    acts, _ = probed.activations(ids, sites)
    for site in sites:
        z = cache[f"blocks.{site.layer}.attn.hook_z"] if site.head is not None else None
        if site.kind == "attn.hook_result":
            expected = z[:, :, site.head] @ probed.model.W_O[site.layer, site.head]
        elif site.kind == "attn.hook_z":
            expected = z[:, :, site.head]
        else:
            expected = cache[site.name]
        torch.testing.assert_close(acts[site], expected.float(), atol=1e-5, rtol=0, msg=site.name)
    for layer in range(2):  # the heads' outputs and the bias make up the attention output
        total = sum(acts[probed.site(f"blocks.{layer}.attn.hook_result.{h}")] for h in range(2))
        torch.testing.assert_close(total + probed.model.b_O[layer], cache[f"blocks.{layer}.hook_attn_out"])


def test_patching_the_first_residual_everywhere_gives_the_sources_logits(bridge_probed):
    probed = bridge_probed
    inputs, _ = probed.encode_batch(["abca", "cccc"])
    sources, _ = probed.encode_batch(["bbab", "acba"])
    site = probed.site("blocks.0.hook_resid_pre")
    masks = {site: torch.ones(inputs.shape, dtype=torch.bool)}
    patched = probed.patched_logits(inputs, masks, probed.hook_values(sources, [site]))
    torch.testing.assert_close(patched, probed.logits(sources), atol=1e-5, rtol=0)
    assert (probed.logits(inputs) - probed.logits(sources)).abs().max() > 1e-3  # the patch did something


def test_a_native_bridge_saves_loads_and_is_read_by_the_whole_product(tmp_path, capsys):
    model_dir, decoder_dir = tmp_path / "bridge", tmp_path / "decoder"
    probed = load_probed(
        native(d_mlp=32, act_fn="gelu", normalization_type="LN"), task="sequences", task_options=SEQUENCES
    )
    probed.save(model_dir)
    assert {p.name for p in model_dir.iterdir()} >= {"bridge_config.json", "model.safetensors", "inversionview.json"}
    again = load_probed(str(model_dir))
    ids, _ = probed.encode_batch(["abc", "cab"])
    torch.testing.assert_close(again.logits(ids), probed.logits(ids))
    assert again.content_hash == probed.content_hash

    site = "blocks.1.hook_resid_post"
    args = {"probed": model_dir, "threads": 1}
    assert main(cli_args("train-decoder", **args, out=decoder_dir, steps=150, eval_every=150, d_model=32)) == 0
    capsys.readouterr()
    assert (
        main(
            cli_args("invert", **args, decoder=decoder_dir, input="abc", position=-1, site=site, samples=50, json=True)
        )
        == 0
    )
    reading = json.loads(capsys.readouterr().out)
    assert len(reading["samples"]) == 50 and 0.0 <= reading["precision"] <= 1.0
    assert main(cli_args("patch", **args, input="abca", source="cbca", patch=f"{site}@-1", json=True)) == 0
    assert "effect" in capsys.readouterr().out


def test_exact_on_a_sequences_task_equals_brute_force():
    probed = load_probed(
        native(d_mlp=32, act_fn="gelu", normalization_type="LN"), task="sequences", task_options=SEQUENCES
    )
    site, query, position = probed.site("blocks.0.hook_attn_out"), "abca", 2
    found = exact_preimage(probed, query, position, site, epsilon=0.3)

    q = probed.activations(probed.encode_batch([query])[0], [site])[0][site][0, position]
    members = set()
    for length in range(2, 5):
        for tokens in itertools.product("abc", repeat=length):
            text = "".join(tokens)
            act = probed.activations(probed.encode_batch([text])[0], [site])[0][site][0, : length + 1]
            if ((act - q).norm(dim=-1) / q.norm()).min() <= 0.3:
                members.add(text)
    assert found.space_size == 3**2 + 3**3 + 3**4
    assert found.n_members == len(members)
    assert found.member_texts(probed.task.enumerate_texts()) == members
    assert 1 < len(members) < found.space_size


def test_a_hook_that_is_not_an_activation_is_a_one_line_error(tmp_path, capsys):
    load_probed(native(attn_only=True, normalization_type=None), task="sequences", task_options=SEQUENCES).save(
        tmp_path
    )
    command = cli_args("exact", probed=tmp_path, input="abc", position=-1, site="blocks.0.attn.hook_pattern")
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a [batch, position, d] activation" in err
