"""A TransformerLens ``TransformerBridge`` as a probed model (``pip install "inversionview[lens]"``).

The bridge's own hook names are its sites: every hook whose activation is (batch, position, d)
(``hook_embed``, ``blocks.L.hook_resid_pre``, ``blocks.L.ln1.hook_normalized``,
``blocks.L.mlp.hook_post``, …), plus one per head: ``blocks.L.attn.hook_z.H`` (the head's
(batch, position, d_head) slice of ``hook_z``) and ``blocks.L.attn.hook_result.H`` (that slice times
the head's rows of W_O, its share of ``hook_attn_out`` without the bias). Reading and patching go
through the same :class:`LensPoint` and the bridge's own hooks.

A native bridge (``boot_native``) saves to a directory of ``bridge_config.json`` (its
``TransformerBridgeConfig``), ``model.safetensors`` (its state dict) and ``inversionview.json``;
one booted from Hugging Face is saved as the Hugging Face model it wraps.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from inversionview.errors import UserError, first_line
from inversionview.probed.hooks import HEAD_SITE_KIND
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import LAYER_SITE_KINDS, Site
from inversionview.storage import PROBED_META_FILE, WEIGHTS_FILE, file_hash, read_json, save_tensors, write_json

BRIDGE_CONFIG_FILE = "bridge_config.json"
Z_KIND = "attn.hook_z"
_HEAD_RE = re.compile(r"blocks\.(\d+)\.(attn\.hook_result|attn\.hook_z)\.(\d+)")
_LAYER_RE = re.compile(r"blocks\.(\d+)\.(.+)")


def require_lens():
    """The TransformerLens bridge class, or a one-line error saying how to install it."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        raise UserError('TransformerLens bridges need the lens extra: pip install "inversionview[lens]"') from None
    return TransformerBridge


def is_bridge(model: object) -> bool:
    """Whether ``model`` is a TransformerLens bridge (without importing TransformerLens)."""
    return any(cls.__name__ == "TransformerBridge" for cls in type(model).__mro__)


@dataclass(frozen=True)
class LensPoint:
    """Where a site's value lives in a bridge: a hook, a head of it, and how the value is read."""

    hook: str
    head: int | None = None
    weight: torch.Tensor | None = None
    """A head's rows of W_O, (d_head, d_model): ``hook_result.H`` reads ``z[:, :, H] @ weight``."""

    def value(self, hooked: torch.Tensor) -> torch.Tensor:
        """The part of the hook's tensor that is this site's, as patching replaces it."""
        return hooked if self.head is None else hooked[:, :, self.head]

    def reading(self, hooked: torch.Tensor) -> torch.Tensor:
        value = self.value(hooked)
        return value if self.weight is None else value @ self.weight

    def replaced(self, hooked: torch.Tensor, mask: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``hooked`` with this site's value taken from ``source`` where ``mask`` (B, T) is set."""
        patched = hooked.clone()
        region = self.value(patched)
        keep = mask.to(hooked.device).view(*mask.shape, *[1] * (region.dim() - 2))
        region.copy_(torch.where(keep, source.to(region.dtype), region))
        return patched


def parse_lens_site(name: str) -> Site:
    """A bridge hook name as a Site: layer from ``blocks.L.``, -1 for hooks outside the blocks."""
    if match := _HEAD_RE.fullmatch(name):
        return Site(int(match[1]), match[2], int(match[3]))
    if match := _LAYER_RE.fullmatch(name):
        return Site(int(match[1]), match[2])
    return Site(-1, name)


class LensProbedModel(ProbedModel):
    """A probed model whose network is a TransformerLens bridge (booted either way)."""

    @property
    def cfg(self):
        return self.model.cfg

    @property
    def n_layers(self) -> int:
        return self.cfg.n_layers

    @property
    def n_heads(self) -> int:
        return self.cfg.n_heads

    @property
    def d_model(self) -> int:
        return self.cfg.d_model

    @property
    def is_encoder(self) -> bool:
        return False

    @property
    def reads_attention(self) -> bool:
        return True

    @cached_property
    def hook_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every hook's activation shape on a 2-token input (batch 1)."""
        ids = torch.tensor([[self.task.tokenizer.bos_id] * 2], device=self.device)
        with torch.no_grad():
            _, cache = self.model.run_with_cache(ids)
        return {name: tuple(value.shape) for name, value in cache.items()}

    def site_width(self, site: Site) -> int:
        if site.kind == Z_KIND:
            return self.cfg.d_head
        return self.d_model if site.kind == HEAD_SITE_KIND else self.hook_shapes[site.name][-1]

    def sites(self) -> list[Site]:
        """The residual stream, sublayer outputs and head outputs, as ``all_sites`` lists them."""
        listed = [Site(-1, "hook_embed")] if "hook_embed" in self.hook_shapes else []
        for layer in range(self.n_layers):
            for kind in LAYER_SITE_KINDS:
                if f"blocks.{layer}.{kind}" in self.hook_shapes:
                    listed.append(Site(layer, kind))
                if kind == "hook_attn_out":
                    listed.extend(Site(layer, HEAD_SITE_KIND, h) for h in range(self.n_heads))
        return listed

    def site(self, name: str) -> Site:
        site = parse_lens_site(name)
        if site.head is not None:
            if site.layer < self.n_layers and site.head < self.n_heads:
                return site
        elif len(self.hook_shapes.get(name, ())) == 3:
            return site
        elif name in self.hook_shapes:
            shape = self.hook_shapes[name]
            raise UserError(f"{name} is not a [batch, position, d] activation (on a 2-token input it is {list(shape)})")
        valid = ", ".join(s.name for s in self.sites())
        raise UserError(f"unknown site {name!r}; sites include {valid}, and every [batch, position, d] hook")

    def hook_point(self, site: Site) -> LensPoint:
        """The bridge's hook table: where ``site`` is read and patched."""
        if site.kind == HEAD_SITE_KIND:
            return LensPoint(f"blocks.{site.layer}.{Z_KIND}", site.head, self.model.W_O[site.layer, site.head])
        if site.kind == Z_KIND:
            return LensPoint(f"blocks.{site.layer}.{Z_KIND}", site.head)
        return LensPoint(site.name)

    @torch.no_grad()
    def activations(
        self, ids: torch.Tensor, sites: list[Site], attention_layers: tuple[int, ...] = ()
    ) -> tuple[dict[Site, torch.Tensor], dict[int, torch.Tensor]]:
        points = {site: self.hook_point(site) for site in sites}
        patterns = {layer: f"blocks.{layer}.attn.hook_pattern" for layer in attention_layers}
        wanted = {p.hook for p in points.values()} | set(patterns.values())
        _, cache = self.model.run_with_cache(ids.to(self.device), names_filter=lambda name: name in wanted)
        acts = {site: point.reading(cache[point.hook]).float().cpu() for site, point in points.items()}
        return acts, {layer: cache[name].float().cpu() for layer, name in patterns.items()}

    @torch.no_grad()
    def device_logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids.to(self.device))

    @torch.no_grad()
    def hook_values(self, ids: torch.Tensor, sites: list[Site]) -> dict[Site, torch.Tensor]:
        values: dict[Site, torch.Tensor] = {}

        def store(site: Site, point: LensPoint):
            return lambda hooked, hook: values.__setitem__(site, point.value(hooked).clone())

        hooks = [(point.hook, store(site, point)) for site, point in ((s, self.hook_point(s)) for s in sites)]
        self.model.run_with_hooks(ids.to(self.device), fwd_hooks=hooks)
        return values

    @torch.no_grad()
    def patched_logits(
        self, ids: torch.Tensor, masks: dict[Site, torch.Tensor], source_values: dict[Site, torch.Tensor]
    ) -> torch.Tensor:
        def patch(point: LensPoint, mask: torch.Tensor, source: torch.Tensor):
            return lambda hooked, hook: point.replaced(hooked, mask, source)

        hooks = [(self.hook_point(s).hook, patch(self.hook_point(s), m, source_values[s])) for s, m in masks.items()]
        return self.model.run_with_hooks(ids.to(self.device), fwd_hooks=hooks)

    def input_embedding(self) -> torch.Tensor:
        return self.model.W_E.detach()

    def position_embedding(self) -> torch.Tensor | None:
        if getattr(self.cfg, "positional_embedding_type", None) != "standard":
            return None
        return self.model.W_pos.detach()

    def save(self, directory: Path, provenance: dict | None = None) -> None:
        """Write a native bridge as ``bridge_config.json`` + ``model.safetensors`` + ``inversionview.json``."""
        if getattr(self.cfg, "architecture", None) not in (None, "TransformerLensNative"):
            raise UserError("a bridge booted from Hugging Face is saved as its Hugging Face model (save_pretrained)")
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / BRIDGE_CONFIG_FILE, bridge_config_dict(self.cfg))
        self.content_hash = save_tensors(directory / WEIGHTS_FILE, self.model.state_dict())
        self.directory = directory
        self.meta = {
            "task": self.task.name,
            "task_options": self.task.options(),
            "tokenizer": self.task.tokenizer.to_dict(),
            "content_hash": self.content_hash,
            "provenance": provenance or {},
        }
        write_json(directory / PROBED_META_FILE, self.meta)


def bridge_config_dict(cfg) -> dict:
    """The fields of a ``TransformerBridgeConfig`` as JSON (dtypes and devices as their names)."""
    plain = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, (torch.dtype, torch.device)):
            value = str(value).removeprefix("torch.")
        elif hasattr(value, "item"):  # a numpy scalar
            value = value.item()
        plain[key] = value
    plain["device"] = None
    return plain


def state_hash(model: torch.nn.Module) -> str:
    """A content hash of a model held in memory: its tensors, in order, with their names."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def quietly():
    """TransformerLens prints "Moving model to device" on stdout, which would break ``--json``."""
    return contextlib.redirect_stdout(io.StringIO())


def wrap_bridge(bridge, task, source: str = "bridge", meta: dict | None = None, device=None) -> LensProbedModel:
    """A bridge in memory as a probed model of ``task``, on ``device`` when given."""
    if device is not None and next(bridge.parameters()).device != device:
        with quietly():
            bridge = bridge.to(device)
    bridge.eval()
    return LensProbedModel(bridge, task, state_hash(bridge), source, meta or {})


def load_native_bridge(directory: Path, device: torch.device):
    """A native bridge saved by :meth:`LensProbedModel.save`, and its weights' content hash."""
    require_lens()
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources.native import boot

    from inversionview.storage import load_tensors

    meta_path = directory / PROBED_META_FILE
    meta = read_json(meta_path, "probed model metadata") if meta_path.is_file() else {}
    config = read_json(directory / BRIDGE_CONFIG_FILE, "bridge config")
    config["dtype"] = getattr(torch, str(config.get("dtype") or "float32"))
    try:
        with quietly():
            bridge = boot(TransformerBridgeConfig.from_dict(config), device=device)
        bridge.load_state_dict(load_tensors(directory / WEIGHTS_FILE, "bridge weights", meta.get("content_hash")))
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"cannot load the bridge in {directory}: {first_line(exc)}") from None
    return bridge.eval(), file_hash(directory / WEIGHTS_FILE), meta
