"""Activation sites, named as TransformerLens names them, and reading them with PyTorch hooks.

Names: ``blocks.{l}.hook_resid_pre``, ``hook_resid_mid``, ``hook_resid_post``, ``hook_attn_out``,
``hook_mlp_out``, and one head's output ``blocks.{l}.attn.hook_result.{h}`` (the head's share of the
attention output, without the output bias, as in TransformerLens).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from inversionview.errors import UserError
from inversionview.probed.layouts import Layout, submodule

LAYER_SITE_KINDS = ("hook_resid_pre", "hook_resid_mid", "hook_attn_out", "hook_mlp_out", "hook_resid_post")
HEAD_SITE_KIND = "attn.hook_result"
_SITE_RE = re.compile(r"blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out)")
_HEAD_RE = re.compile(r"blocks\.(\d+)\.attn\.hook_result\.(\d+)")


@dataclass(frozen=True, order=True)
class Site:
    """One place in the probed model whose activation can be read."""

    layer: int
    kind: str
    head: int | None = None

    @property
    def name(self) -> str:
        if self.head is not None:
            return f"blocks.{self.layer}.{HEAD_SITE_KIND}.{self.head}"
        return f"blocks.{self.layer}.{self.kind}"

    def __str__(self) -> str:
        return self.name


def all_sites(n_layers: int, n_heads: int, *, resid_mid: bool = True) -> list[Site]:
    """Every site of a model, layer by layer, in forward order (no resid_mid in a parallel block)."""
    sites = []
    for layer in range(n_layers):
        for kind in LAYER_SITE_KINDS:
            if kind == "hook_resid_mid" and not resid_mid:
                continue
            sites.append(Site(layer, kind))
            if kind == "hook_attn_out":
                sites.extend(Site(layer, HEAD_SITE_KIND, h) for h in range(n_heads))
    return sites


def parse_site(name: str, n_layers: int, n_heads: int, *, resid_mid: bool = True) -> Site:
    """Parse a site name strictly; an unknown name fails with the list of valid ones."""
    valid = all_sites(n_layers, n_heads, resid_mid=resid_mid)
    site = None
    if match := _SITE_RE.fullmatch(name):
        site = Site(int(match[1]), match[2])
    elif match := _HEAD_RE.fullmatch(name):
        site = Site(int(match[1]), HEAD_SITE_KIND, int(match[2]))
    if site not in valid:
        raise UserError(f"unknown site {name!r}; valid sites: {', '.join(s.name for s in valid)}")
    return site


def canonical_site(site: Site) -> Site:
    """The one name of a site that has two: ``blocks.{l}.hook_resid_pre`` is ``blocks.{l-1}.hook_resid_post``."""
    if site.kind == "hook_resid_pre" and site.layer > 0:
        return Site(site.layer - 1, "hook_resid_post")
    return site


class _StopForward(Exception):
    """Raised inside a hook once every requested activation is read: later layers need not run."""


@contextmanager
def _hooks(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _first_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))


def _first_output(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def run_with_sites(
    model: nn.Module,
    layout: Layout,
    ids: torch.Tensor,
    sites: list[Site],
    *,
    attention_layers: tuple[int, ...] = (),
    stop_early: bool = True,
) -> tuple[dict[Site, torch.Tensor], dict[int, torch.Tensor]]:
    """Run ``model`` on ``ids`` (B, T) and return each site's activation, (B, T, d_model).

    ``attention_layers`` also returns those layers' attention patterns, (B, H, T, T). With
    ``stop_early`` the forward pass ends after the last layer that holds a requested site.
    """
    if attention_layers and layout.qkv is None:
        raise UserError("attention patterns are read from GPT-2 models only")
    blocks = submodule(model, layout.blocks)
    cache: dict[Site, torch.Tensor] = {}
    patterns: dict[int, torch.Tensor] = {}
    handles = []
    wanted = set(sites)
    last_layer = max([s.layer for s in sites] + list(attention_layers), default=-1)

    def done_check() -> None:
        if stop_early and wanted.issubset(cache) and len(patterns) == len(attention_layers):
            raise _StopForward

    def store(site: Site, value: torch.Tensor) -> None:
        cache[site] = value
        done_check()

    for layer in sorted({s.layer for s in sites} | set(attention_layers)):
        block = blocks[layer]
        kinds = {s.kind for s in sites if s.layer == layer}
        heads = sorted(s.head for s in sites if s.layer == layer and s.head is not None)
        attn = submodule(block, layout.attn)

        if "hook_resid_pre" in kinds:
            site = Site(layer, "hook_resid_pre")
            handles.append(
                block.register_forward_pre_hook(
                    lambda m, a, k, site=site: store(site, _first_arg(a, k)), with_kwargs=True
                )
            )
        if "hook_resid_mid" in kinds:
            if layout.mid_norm is None:
                raise UserError("a block with a parallel residual has no hook_resid_mid")
            site = Site(layer, "hook_resid_mid")
            handles.append(
                submodule(block, layout.mid_norm).register_forward_pre_hook(
                    lambda m, a, k, site=site: store(site, _first_arg(a, k)), with_kwargs=True
                )
            )
        if "hook_attn_out" in kinds:
            site = Site(layer, "hook_attn_out")
            handles.append(attn.register_forward_hook(lambda m, a, o, site=site: store(site, _first_output(o))))
        if "hook_mlp_out" in kinds:
            site = Site(layer, "hook_mlp_out")
            handles.append(
                submodule(block, layout.mlp).register_forward_hook(
                    lambda m, a, o, site=site: store(site, _first_output(o))
                )
            )
        if "hook_resid_post" in kinds:
            site = Site(layer, "hook_resid_post")
            handles.append(block.register_forward_hook(lambda m, a, o, site=site: store(site, _first_output(o))))
        if heads:

            def read_heads(module, args, layer=layer, heads=heads):
                z = args[0]  # (B, T, H * d_head), heads side by side before the output projection
                w_o = module.weight if layout.out_proj_stores_in_out else module.weight.T  # (in, out)
                head_dim = w_o.shape[0] // model.config.num_attention_heads
                for h in heads:
                    part = slice(h * head_dim, (h + 1) * head_dim)
                    cache[Site(layer, HEAD_SITE_KIND, h)] = z[..., part] @ w_o[part, :]
                done_check()

            handles.append(submodule(block, layout.out_proj).register_forward_pre_hook(read_heads))
        if layer in attention_layers:

            def read_pattern(module, args, output, layer=layer, attn=attn):
                q, k, _ = output.split(attn.split_size, dim=2)
                batch, length, _ = q.shape
                q = q.view(batch, length, -1, attn.head_dim).transpose(1, 2)
                k = k.view(batch, length, -1, attn.head_dim).transpose(1, 2)
                scores = q @ k.transpose(-1, -2) / attn.head_dim**0.5
                causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
                patterns[layer] = scores.masked_fill(~causal, float("-inf")).softmax(-1)
                done_check()

            handles.append(submodule(block, layout.qkv).register_forward_hook(read_pattern))

    with _hooks(handles):
        try:
            model(input_ids=ids, use_cache=False)
        except _StopForward:
            pass
    if last_layer >= 0 and not wanted.issubset(cache):
        raise RuntimeError(f"hooks missed sites {sorted(s.name for s in wanted - set(cache))}")
    return cache, patterns
