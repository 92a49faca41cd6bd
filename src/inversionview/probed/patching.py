"""Activation patching: run the probed model on an input with chosen activations replaced by the
ones the same model computes on a source input, at chosen positions.

A site is patched where it is read (``sites.py``): the residual stream before a block (its input),
a sublayer's output, a block's output, or one head's share of the attention, which is its slice of
the input to the output projection (so patching every head of a layer is patching the layer's
attention output). The model itself is never changed, and its hooks are removed whatever happens.
"""

from __future__ import annotations

import torch
from torch import nn

from inversionview.probed.hooks import HookPoint, hook_point
from inversionview.probed.layouts import Layout
from inversionview.probed.sites import Site, first_arg, first_output, hooks_removed


@torch.no_grad()
def hook_values(model: nn.Module, layout: Layout, ids: torch.Tensor, sites: list[Site]) -> dict[Site, torch.Tensor]:
    """Each site's value at its hook point in a run on ``ids`` (B, T): (B, T, width of the site)."""
    values: dict[Site, torch.Tensor] = {}
    handles = []
    for site in sites:
        point = hook_point(model, layout, site).patchable()

        def store_input(module, args, kwargs, site=site, point=point):
            values[site] = first_arg(args, kwargs)[..., point.width].clone()

        def store_output(module, args, output, site=site, point=point):
            values[site] = first_output(output)[..., point.width].clone()

        if point.before:
            handles.append(point.module.register_forward_pre_hook(store_input, with_kwargs=True))
        else:
            handles.append(point.module.register_forward_hook(store_output))
    with hooks_removed(handles):
        model(input_ids=ids, use_cache=False)
    return values


def _replace(value: torch.Tensor, point: HookPoint, mask: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``value`` (B, T, d) with its ``point.width`` slice taken from ``source`` where ``mask`` (B, T)."""
    patched = value.clone()
    region = patched[..., point.width]
    patched[..., point.width] = torch.where(mask[..., None].to(value.device), source.to(value.dtype), region)
    return patched


@torch.no_grad()
def patched_logits(
    model: nn.Module,
    layout: Layout,
    ids: torch.Tensor,
    masks: dict[Site, torch.Tensor],
    source_values: dict[Site, torch.Tensor],
) -> torch.Tensor:
    """Logits (B, T, V) of a run on ``ids`` (B, T) in which each site's value is taken from
    ``source_values`` (as ``hook_values`` returns them for the B source inputs) where its mask
    (B, T) is set: each input may be patched at positions of its own."""
    handles = []
    for site, mask in masks.items():
        point, source = hook_point(model, layout, site).patchable(), source_values[site]
        if point.before:

            def before(module, args, kwargs, point=point, mask=mask, source=source):
                if args:
                    return (_replace(args[0], point, mask, source), *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": _replace(kwargs["hidden_states"], point, mask, source)}

            handles.append(point.module.register_forward_pre_hook(before, with_kwargs=True))
        else:

            def after(module, args, output, point=point, mask=mask, source=source):
                if isinstance(output, tuple):
                    return (_replace(output[0], point, mask, source), *output[1:])
                return _replace(output, point, mask, source)

            handles.append(point.module.register_forward_hook(after))
    with hooks_removed(handles):
        return model(input_ids=ids, use_cache=False).logits


def position_masks(per_input: list[list[tuple[Site, int]]], width: int) -> dict[Site, torch.Tensor]:
    """Per site, a (B, width) mask of the positions each input is patched at (``per_input``: for
    each input, its (site, position) pairs)."""
    masks: dict[Site, torch.Tensor] = {}
    for row, pairs in enumerate(per_input):
        for site, position in pairs:
            masks.setdefault(site, torch.zeros(len(per_input), width, dtype=torch.bool))[row, position] = True
    return masks
