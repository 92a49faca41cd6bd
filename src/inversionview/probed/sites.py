"""Activation sites, named as TransformerLens names them, and reading them with PyTorch hooks.

Names: ``blocks.{l}.hook_resid_pre``, ``hook_resid_mid``, ``hook_resid_post``, ``hook_attn_out``,
``hook_mlp_out``, and one head's output ``blocks.{l}.attn.hook_result.{h}`` (the head's share of the
attention output, without the output bias, as in TransformerLens). Encoders add
``blocks.{l}.ln1.hook_normalized`` and ``blocks.{l}.hook_normalized_resid_post`` (see ``layouts``),
and two sites of the whole input: ``pooled`` (the mean of the last layer's output over the input's
tokens, [CLS] and [SEP] included, as sentence-transformers pools) and ``cls`` (the last layer's
output at [CLS]). A whole-input site holds the same vector at every position of its input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from inversionview.errors import UserError
from inversionview.probed.hooks import HEAD_SITE_KIND, hook_point
from inversionview.probed.layouts import Layout, submodule

LAYER_SITE_KINDS = ("hook_resid_pre", "hook_resid_mid", "hook_attn_out", "hook_mlp_out", "hook_resid_post")
ENCODER_SITE_KINDS = (
    "hook_resid_pre",
    "hook_attn_out",
    "hook_resid_mid",
    "ln1.hook_normalized",
    "hook_mlp_out",
    "hook_resid_post",
    "hook_normalized_resid_post",
)
WHOLE_INPUT_KINDS = ("pooled", "cls")
_SITE_RE = re.compile(r"blocks\.(\d+)\.(" + "|".join(re.escape(k) for k in ENCODER_SITE_KINDS) + ")")
_HEAD_RE = re.compile(r"blocks\.(\d+)\.attn\.hook_result\.(\d+)")


@dataclass(frozen=True, order=True)
class Site:
    """One place in the probed model whose activation can be read."""

    layer: int
    kind: str
    head: int | None = None

    @property
    def name(self) -> str:
        if self.kind in WHOLE_INPUT_KINDS or self.layer < 0:  # a site of the whole input, or outside the blocks
            return self.kind
        if self.head is not None:
            return f"blocks.{self.layer}.{self.kind}.{self.head}"
        return f"blocks.{self.layer}.{self.kind}"

    def __str__(self) -> str:
        return self.name


def head_sites(n_layers: int, n_heads: int) -> list[Site]:
    """Every attention head's output site, layer by layer."""
    return [Site(layer, HEAD_SITE_KIND, h) for layer in range(n_layers) for h in range(n_heads)]


def all_sites(n_layers: int, n_heads: int, *, resid_mid: bool = True, encoder: bool = False) -> list[Site]:
    """Every site of a model, layer by layer, in forward order (no resid_mid in a parallel block).

    An encoder lists ``hook_resid_pre`` at layer 0 only: later, it is the previous layer's
    ``hook_normalized_resid_post``, the name it is listed under (``parse_site`` takes both)."""
    sites = []
    for layer in range(n_layers):
        for kind in ENCODER_SITE_KINDS if encoder else LAYER_SITE_KINDS:
            if (kind == "hook_resid_mid" and not resid_mid) or (encoder and kind == "hook_resid_pre" and layer):
                continue
            sites.append(Site(layer, kind))
            if kind == "hook_attn_out":
                sites.extend(Site(layer, HEAD_SITE_KIND, h) for h in range(n_heads))
    return sites + ([Site(n_layers - 1, kind) for kind in WHOLE_INPUT_KINDS] if encoder else [])


def parse_site(name: str, n_layers: int, n_heads: int, *, resid_mid: bool = True, encoder: bool = False) -> Site:
    """Parse a site name strictly; an unknown name fails with the list of valid ones."""
    valid = all_sites(n_layers, n_heads, resid_mid=resid_mid, encoder=encoder)
    site = None
    if match := _SITE_RE.fullmatch(name):
        site = Site(int(match[1]), match[2])
        if encoder and site.kind == "hook_resid_pre" and site.layer > 0:
            site = Site(site.layer - 1, "hook_normalized_resid_post")
    elif match := _HEAD_RE.fullmatch(name):
        site = Site(int(match[1]), HEAD_SITE_KIND, int(match[2]))
    elif name in WHOLE_INPUT_KINDS:
        site = Site(n_layers - 1, name)
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
def hooks_removed(handles: list) -> Iterator[None]:
    """Run the block, then remove ``handles``' hooks, whatever happens."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def first_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    """A module's input as a hook sees it: positional, or the ``hidden_states`` keyword."""
    return args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))


def first_output(output) -> torch.Tensor:
    """A module's output as a hook sees it: the first element of a tuple, or the tensor itself."""
    return output[0] if isinstance(output, tuple) else output


class _SiteReader:
    """The hooks of one forward pass: each stores its site's activation, and the pass stops once
    everything asked for is stored (with ``stop_early``)."""

    def __init__(self, model: nn.Module, layout: Layout, sites: list[Site], attention_layers, stop_early: bool):
        self.model, self.layout, self.stop_early = model, layout, stop_early
        self.wanted, self.attention_layers = set(sites), attention_layers
        self.cache: dict[Site, torch.Tensor] = {}
        self.patterns: dict[int, torch.Tensor] = {}
        self.handles: list = []

    def done_check(self) -> None:
        if self.stop_early and self.wanted.issubset(self.cache) and len(self.patterns) == len(self.attention_layers):
            raise _StopForward

    def store(self, site: Site, value: torch.Tensor) -> None:
        self.cache[site] = value
        self.done_check()

    def _before(self, module: nn.Module, site: Site) -> None:
        def hook(module, args, kwargs):
            self.store(site, first_arg(args, kwargs))

        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def _after(self, module: nn.Module, site: Site) -> None:
        self.handles.append(module.register_forward_hook(lambda m, a, o: self.store(site, first_output(o))))

    def hook_site(self, site: Site) -> None:
        """Store ``site``'s activation when the forward pass reaches its hook point."""
        point = hook_point(self.model, self.layout, site)
        if point.before:

            def before(module, args, kwargs):
                self.store(site, point.reading(first_arg(args, kwargs)))

            self.handles.append(point.module.register_forward_pre_hook(before, with_kwargs=True))
        else:
            self.handles.append(
                point.module.register_forward_hook(lambda m, a, o: self.store(site, point.reading(first_output(o))))
            )

    def hook_pattern(self, layer: int, block: nn.Module) -> None:
        """One layer's attention pattern (B, H, T, T), recomputed from its queries and keys."""
        attn = submodule(block, self.layout.attn)

        def read_pattern(module, args, output):
            q, k, _ = output.split(attn.split_size, dim=2)
            batch, length, _ = q.shape
            q = q.view(batch, length, -1, attn.head_dim).transpose(1, 2)
            k = k.view(batch, length, -1, attn.head_dim).transpose(1, 2)
            scores = q @ k.transpose(-1, -2) / attn.head_dim**0.5
            causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
            self.patterns[layer] = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            self.done_check()

        self.handles.append(submodule(block, self.layout.qkv).register_forward_hook(read_pattern))


def whole_input(site: Site, last_output: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A whole-input site's vector from the last layer's output (B, T, d) and the mask of real
    tokens (B, T), repeated at every position: (B, T, d)."""
    if site.kind == "cls":
        vector = last_output[:, 0]
    else:
        mask = attention_mask[..., None].to(last_output.dtype)  # (B, T, 1)
        vector = (last_output * mask).sum(1) / mask.sum(1)
    return vector[:, None, :].expand_as(last_output)


def _read_for(site: Site) -> Site:
    """The site whose activation a hook stores: a whole-input site is computed from the last output."""
    return Site(site.layer, "hook_normalized_resid_post") if site.kind in WHOLE_INPUT_KINDS else site


def run_with_sites(
    model: nn.Module,
    layout: Layout,
    ids: torch.Tensor,
    sites: list[Site],
    *,
    attention_layers: tuple[int, ...] = (),
    stop_early: bool = True,
    attention_mask: torch.Tensor | None = None,
) -> tuple[dict[Site, torch.Tensor], dict[int, torch.Tensor]]:
    """Run ``model`` on ``ids`` (B, T) and return each site's activation, (B, T, d_model).

    ``attention_layers`` also returns those layers' attention patterns, (B, H, T, T). With
    ``stop_early`` the forward pass ends after the last layer that holds a requested site. An
    encoder needs ``attention_mask`` (B, T), 1 on real tokens: every position attends both ways,
    so padding would otherwise change the activations.
    """
    if attention_layers and layout.qkv is None:
        raise UserError("attention patterns are read from GPT-2 models only")
    wanted = sites
    sites = list(dict.fromkeys(_read_for(s) for s in sites))
    blocks = submodule(model, layout.blocks)
    reader = _SiteReader(model, layout, sites, attention_layers, stop_early)
    for site in sites:
        reader.hook_site(site)
    for layer in attention_layers:
        reader.hook_pattern(layer, blocks[layer])
    inputs = {"input_ids": ids} | ({"attention_mask": attention_mask} if attention_mask is not None else {})
    with hooks_removed(reader.handles):
        try:
            model(**inputs) if layout.encoder else model(**inputs, use_cache=False)
        except _StopForward:
            pass
    last_layer = max([s.layer for s in sites] + list(attention_layers), default=-1)
    if last_layer >= 0 and not reader.wanted.issubset(reader.cache):
        raise RuntimeError(f"hooks missed sites {sorted(s.name for s in reader.wanted - set(reader.cache))}")
    for site in wanted:
        if site.kind in WHOLE_INPUT_KINDS:
            mask = attention_mask if attention_mask is not None else torch.ones_like(ids)
            reader.cache[site] = whole_input(site, reader.cache[_read_for(site)], mask)
    return {s: reader.cache[s] for s in wanted}, reader.patterns
