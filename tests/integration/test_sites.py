"""Activation sites: names, parsing, and agreement with the reference forward pass."""

import pytest
import torch

from inversionview.errors import UserError
from inversionview.probed.layouts import LAYOUTS
from inversionview.probed.sites import Site, all_sites, canonical_site, parse_site, run_with_sites


def test_site_names_round_trip():
    for site in all_sites(n_layers=2, n_heads=3):
        assert parse_site(site.name, 2, 3) == site


def test_unknown_site_lists_valid_names():
    with pytest.raises(UserError) as info:
        parse_site("blocks.0.hook_resid_middle", 2, 1)
    assert "blocks.1.attn.hook_result.0" in str(info.value)
    with pytest.raises(UserError):
        parse_site("blocks.2.hook_resid_pre", 2, 1)
    with pytest.raises(UserError):
        parse_site("blocks.0.attn.hook_result.1", 2, 1)


def test_resid_pre_of_later_layer_is_an_alias():
    assert canonical_site(Site(1, "hook_resid_pre")) == Site(0, "hook_resid_post")
    assert canonical_site(Site(0, "hook_resid_pre")) == Site(0, "hook_resid_pre")


def test_activations_match_reference_forward(tiny_probed, tiny_probed_dir):
    from transformers import GPT2LMHeadModel

    model = tiny_probed.model
    ids, _ = tiny_probed.encode_batch(["abcab|a:2", "zzzyx|z:3"])
    acts, patterns = run_with_sites(
        model, tiny_probed.layout, ids, tiny_probed.sites(), attention_layers=(0, 1), stop_early=False
    )
    # The reference is the Hugging Face model exactly as it loads, untouched by our loader.
    untouched = GPT2LMHeadModel.from_pretrained(tiny_probed_dir).eval()
    with torch.no_grad():
        reference = untouched(input_ids=ids, output_hidden_states=True)
    hidden = reference.hidden_states
    for layer in range(tiny_probed.n_layers):
        resid_pre = acts[Site(layer, "hook_resid_pre")]
        torch.testing.assert_close(resid_pre, hidden[layer], atol=1e-5, rtol=0)
        mid = acts[Site(layer, "hook_resid_mid")]
        torch.testing.assert_close(mid, resid_pre + acts[Site(layer, "hook_attn_out")], atol=1e-5, rtol=0)
        post = acts[Site(layer, "hook_resid_post")]
        torch.testing.assert_close(post, mid + acts[Site(layer, "hook_mlp_out")], atol=1e-5, rtol=0)
        heads = sum(acts[Site(layer, "attn.hook_result", h)] for h in range(tiny_probed.n_heads))
        bias = tiny_probed.blocks[layer].attn.c_proj.bias
        torch.testing.assert_close(heads + bias, acts[Site(layer, "hook_attn_out")], atol=1e-5, rtol=0)
    # The last layer's output before the final layer norm: logits from it equal the model's.
    last = acts[Site(tiny_probed.n_layers - 1, "hook_resid_post")]
    logits = model.lm_head(model.transformer.ln_f(last))
    torch.testing.assert_close(logits, reference.logits, atol=1e-5, rtol=0)


def test_stop_early_returns_same_values(tiny_probed):
    ids, _ = tiny_probed.encode_batch(["abcab|a:2"])
    site = Site(0, "hook_mlp_out")
    early, _ = run_with_sites(tiny_probed.model, tiny_probed.layout, ids, [site], stop_early=True)
    full, _ = run_with_sites(tiny_probed.model, tiny_probed.layout, ids, [site], stop_early=False)
    torch.testing.assert_close(early[site], full[site])


def test_attention_patterns_match_eager_attention(tiny_probed_dir):
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(tiny_probed_dir, attn_implementation="eager").eval()
    ids = torch.tensor([[37, 0, 1, 2, 0, 35, 0, 36, 27, 38]])
    patterns = run_with_sites(model, LAYOUTS["gpt2"], ids, [], attention_layers=(0, 1))[1]
    with torch.no_grad():
        reference = model(input_ids=ids, output_attentions=True).attentions
    for layer in (0, 1):
        torch.testing.assert_close(patterns[layer], reference[layer], atol=1e-5, rtol=0)


def test_verification_halves_batches_that_run_out_of_memory(tiny_probed, monkeypatch):
    from inversionview.probed.verify import verify_ids

    site = tiny_probed.site("blocks.1.hook_resid_post")
    ids, _ = tiny_probed.encode_batch(["abcab|a:2", "zzzyx|z:3", "qqrst|q:2", "mmnno|n:2", "abcde|e:1"])
    query = torch.randn(tiny_probed.d_model)
    expected = verify_ids(tiny_probed, site, ids, query, "euclidean", batch_size=8)
    real = tiny_probed.activations
    seen = []

    def small_memory(chunk, sites, **kwargs):
        seen.append(len(chunk))
        if len(chunk) > 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 GB")
        return real(chunk, sites, **kwargs)

    monkeypatch.setattr(tiny_probed, "activations", small_memory)
    torch.testing.assert_close(verify_ids(tiny_probed, site, ids, query, "euclidean", batch_size=8), expected)
    assert seen[:3] == [5, 4, 2] and max(seen[2:]) <= 2


def test_reading_and_patching_resolve_sites_through_one_hook_table(tiny_probed, monkeypatch):
    from inversionview.probed import hooks, patching, sites

    assert sites.hook_point is patching.hook_point is hooks.hook_point
    resolved: list[tuple[str, str]] = []

    def spying(model, layout, site):
        resolved.append((site.name, "seen"))
        return hooks.hook_point(model, layout, site)

    monkeypatch.setattr(sites, "hook_point", spying)
    monkeypatch.setattr(patching, "hook_point", spying)
    site = tiny_probed.site("blocks.1.attn.hook_result.0")
    ids, _ = tiny_probed.encode_batch(["abc|a:1"])
    tiny_probed.activations(ids, [site])
    read = len(resolved)
    values = tiny_probed.hook_values(ids, [site])
    tiny_probed.patched_logits(ids, {site: ids != -1}, values)
    assert read == 1 and len(resolved) == 3 and {name for name, _ in resolved} == {site.name}
