"""The hook table: where each activation site of a Hugging Face model lives.

A site resolves here, once, to a :class:`HookPoint` (a module, its input or its output, a slice of
the width), and reading (``sites.py``), patching and ablation (``patching.py``) all go through that
point. A head's point is its slice of the input to the attention's output projection; its reading
is that slice times its rows of the projection (TransformerLens's ``hook_result``, without the
output bias), and patching it replaces the slice. Points in the middle of a sum that the residual
stream keeps its own copy of (``hook_resid_mid`` is the input of the second LayerNorm) are read
there but cannot be patched there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from inversionview.errors import UserError
from inversionview.probed.layouts import Layout, submodule

HEAD_SITE_KIND = "attn.hook_result"


@dataclass(frozen=True)
class HookPoint:
    """Where a site's value lives: a module's input (``before``) or output, a slice of its width."""

    module: nn.Module
    before: bool
    width: slice = field(default_factory=lambda: slice(None))
    patch_refusal: str | None = None
    """Why this point cannot be patched, or None when it can."""
    weight: torch.Tensor | None = None
    """A head's rows of the output projection, (d_head, d_model): its reading is ``value @ weight``."""

    def reading(self, value: torch.Tensor) -> torch.Tensor:
        """The site's activation from the value at the point, (B, T, width) -> (B, T, d)."""
        value = value[..., self.width]
        return value if self.weight is None else value @ self.weight

    def patchable(self) -> HookPoint:
        """This point, or a UserError saying why it cannot be patched."""
        if self.patch_refusal is not None:
            raise UserError(self.patch_refusal)
        return self


def hook_point(model: nn.Module, layout: Layout, site) -> HookPoint:
    """The module whose input or output holds ``site``'s value (a ``sites.Site``)."""
    block = submodule(model, layout.blocks)[site.layer]
    if site.kind == HEAD_SITE_KIND:
        return _head_point(model, layout, block, site.head)
    in_the_middle = (
        f"{site.name} cannot be patched on its own (the MLP reads it, the residual stream keeps its own "
        f"copy); patch blocks.{site.layer}.hook_attn_out instead"
    )
    if site.kind == "hook_resid_mid":
        if layout.mid_norm is None:
            raise UserError("a block with a parallel residual has no hook_resid_mid")
        return HookPoint(submodule(block, layout.mid_norm), True, patch_refusal=in_the_middle)
    if site.kind == "ln1.hook_normalized":
        return HookPoint(submodule(block, layout.mid_norm), False, patch_refusal=in_the_middle)
    if site.kind == "hook_resid_post" and layout.encoder:
        return HookPoint(submodule(block, layout.post_norm), True)
    points = {
        "hook_resid_pre": (block, True),
        "hook_attn_out": (submodule(block, layout.attn), False),
        "hook_mlp_out": (submodule(block, layout.mlp), False),
        "hook_resid_post": (block, False),
        "hook_normalized_resid_post": (block, False),
    }
    if site.kind not in points:
        raise UserError(f"{site.name} has no hook point of its own")
    return HookPoint(*points[site.kind])


def _head_point(model: nn.Module, layout: Layout, block: nn.Module, head: int) -> HookPoint:
    out_proj = submodule(block, layout.out_proj)
    w_o = out_proj.weight if layout.out_proj_stores_in_out else out_proj.weight.T  # (H * d_head, d_model)
    head_dim = w_o.shape[0] // model.config.num_attention_heads
    part = slice(head * head_dim, (head + 1) * head_dim)
    return HookPoint(out_proj, True, part, weight=w_o[part, :])
