"""The whitened distance: activations compared after whitening by their site's covariance.

Euclidean distance treats every direction of activation space alike, though a model may spread its
activations far along a few directions and hardly at all along the rest. Whitening,
``w(x) = Σ^{-1/2} (x − μ)``, makes every direction vary alike over the model's own inputs; the
distance is then the relative Euclidean one between whitened vectors, ``‖w(q) − w(a)‖ / ‖w(q)‖``
(ε reads as for ``euclidean``). Σ is estimated from activations of task or corpus inputs, shrunk
toward a multiple of the identity (Ledoit–Wolf), and cached per model and site as safetensors with
its N and date beside it.
"""

from __future__ import annotations

import datetime
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from inversionview.bundled import cache_root
from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site
from inversionview.storage import load_tensors, read_json, save_tensors, write_json
from inversionview.tasks import before_eos

log = logging.getLogger(__name__)

WHITENING_VECTORS = 20_000
"""Activations (positions of task or corpus inputs) the covariance is estimated from."""


@dataclass
class Whitening:
    mean: torch.Tensor
    """(d,)"""
    transform: torch.Tensor
    """(d, d), Σ^{-1/2}, symmetric."""
    n: int
    shrinkage: float
    date: str

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Whitened activations, (..., d) -> (..., d)."""
        return (x.float() - self.mean) @ self.transform


def estimate(vectors: torch.Tensor) -> Whitening:
    """Mean and Σ^{-1/2} of ``vectors`` (n, d), Σ shrunk toward tr(S)/d · I by the Ledoit–Wolf
    weight, which needs no tuning and keeps Σ invertible when d is large against n."""
    x = vectors.double()
    n, d = x.shape
    mean = x.mean(0)
    x = x - mean
    sample = x.T @ x / n
    target = sample.trace() / d
    spread = (sample - target * torch.eye(d, dtype=x.dtype)).pow(2).sum()  # ‖S − μI‖²
    norms = x.pow(2).sum(1)
    # Σ_k ‖x_k x_kᵀ − S‖² = Σ_k ‖x_k‖⁴ − n ‖S‖², without forming n outer products
    noise = (norms.pow(2).sum() - n * sample.pow(2).sum()) / n**2
    shrinkage = float((noise.clamp_min(0) / spread).clamp(0, 1)) if spread > 0 else 1.0
    covariance = shrinkage * target * torch.eye(d, dtype=x.dtype) + (1 - shrinkage) * sample
    values, vectors_ = torch.linalg.eigh(covariance)
    transform = vectors_ @ torch.diag(values.clamp_min(1e-12).rsqrt()) @ vectors_.T
    today = datetime.date.today().isoformat()
    return Whitening(mean.float(), transform.float(), n, round(shrinkage, 6), today)


@torch.no_grad()
def site_vectors(probed: ProbedModel, site: Site, n: int, seed: int = 0) -> torch.Tensor:
    """About ``n`` activations at ``site``: every BOS and text position of seeded task inputs."""
    per_input = max(1, probed.task.max_len // 2)
    texts = probed.task.sample_texts(random.Random(seed), max(8, n // per_input + 1), split="any")
    vectors = []
    for start in range(0, len(texts), 256):
        ids, lengths = probed.encode_batch(texts[start : start + 256])
        acts = probed.activations(ids, [site])[0][site]
        vectors.append(acts[before_eos(lengths, ids.shape[1])])  # BOS and text, not EOS or padding
    return torch.cat(vectors)[:n]


def _cache_files(probed: ProbedModel, site: Site) -> tuple[Path, Path]:
    """Beside the model when its folder is writable, else in the cache, named by its content hash."""
    folder = probed.directory / "whitening" if probed.directory else None
    if folder is None or not _writable(folder):
        folder = cache_root() / "whitening" / probed.content_hash[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{site.name}.safetensors", folder / f"{site.name}.json"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


_LOADED: dict[tuple[str, str], Whitening] = {}


def whitening_for(probed: ProbedModel, site: Site, n: int = WHITENING_VECTORS) -> Whitening:
    """The site's whitening: read from its cache file, else estimated from ``n`` activations (and
    cached). A damaged cache file is a one-line error that says to delete it."""
    key = (probed.content_hash or str(id(probed)), site.name)
    if key not in _LOADED:
        _LOADED[key] = _read_or_estimate(probed, site, n)
    return _LOADED[key]


def in_metric_space(probed: ProbedModel, site: Site, vectors: torch.Tensor, metric: str) -> tuple[torch.Tensor, str]:
    """``vectors`` (..., d) as ``metric`` compares them, and the metric to compare them with:
    whitened and compared as euclidean for ``"whitened"``, else unchanged."""
    if metric != "whitened":
        return vectors, metric
    return whitening_for(probed, site).apply(vectors), "euclidean"


def whitening_record(probed: ProbedModel, site: Site, metric: str) -> dict | None:
    """What a result records of the whitening it used: N, shrinkage and date (None unless whitened)."""
    if metric != "whitened":
        return None
    whitening = whitening_for(probed, site)
    return {"n": whitening.n, "shrinkage": whitening.shrinkage, "date": whitening.date}


def _read_or_estimate(probed: ProbedModel, site: Site, n: int) -> Whitening:
    tensors_path, record_path = _cache_files(probed, site)
    if record_path.is_file():
        record = read_json(record_path, "whitening record")
        what = f"whitening of {site.name} (delete {tensors_path} to estimate it again)"
        tensors = load_tensors(tensors_path, what, record.get("content_hash"))
        if set(tensors) != {"mean", "transform"} or tensors["transform"].shape != (probed.d_model, probed.d_model):
            raise UserError(f"{what}: it does not hold a {probed.d_model}-wide whitening")
        return Whitening(tensors["mean"], tensors["transform"], record["n"], record["shrinkage"], record["date"])
    log.warning(
        "estimating the covariance of %s from %d activations (once; cached in %s)", site, n, tensors_path.parent
    )
    whitening = estimate(site_vectors(probed, site, n))
    content_hash = save_tensors(tensors_path, {"mean": whitening.mean, "transform": whitening.transform})
    record = {"n": whitening.n, "shrinkage": whitening.shrinkage, "date": whitening.date, "site": site.name}
    write_json(record_path, record | {"probed_hash": probed.content_hash, "content_hash": content_hash})
    return whitening
