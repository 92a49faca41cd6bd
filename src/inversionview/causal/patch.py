"""Activation patching of a probed model: does the activation a reading describes carry the answer?

``patch`` runs the model on an input, on a source input, and on the input with the activations at
chosen (site, position) pairs taken from the source run, and measures each by the task's metric
(``causal/metrics.py``). ``effect`` = (LD_clean − LD_patched) / (LD_clean − LD_source): 0 when the
patch changes nothing, 1 when the patched run behaves like the source run. ``patch_pairs`` does the
same for many (input, source) pairs at once, in batched forward passes.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import torch

from inversionview.causal.metrics import Metric, task_metric
from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel
from inversionview.probed.patching import position_masks
from inversionview.probed.query import Position, resolve_position
from inversionview.probed.sites import Site
from inversionview.tasks import pad_batch

UNCHANGED = 1e-6
"""A logit difference that moves less than this has not moved."""


@dataclass
class Prediction:
    prediction: str
    """The most likely next token at the metric's position."""
    logit_diff: float | None


@dataclass
class PatchResult:
    input: str
    source: str
    patches: list[dict]
    """Each ``{"site", "position"}``, positions resolved (BOS = 0)."""
    metric: str
    clean: Prediction
    patched: Prediction
    source_prediction: str
    effect: float | None
    """(LD_clean − LD_patched) / (LD_clean − LD_source); 0 where the patch moved nothing; None where
    the input and the source give the same LD, or for a metric without a logit difference."""
    kl: float | None = None
    """KL(clean ‖ patched) of the next-token distribution, for a free-text metric without answers."""
    top_token_changed: bool | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PatchSummary:
    """Many (input, source) pairs patched alike: their mean effect and how many flipped."""

    n: int
    mean_effect: float | None
    flipped: float
    """Share of the patched runs whose prediction became the source run's."""
    results: list[PatchResult]

    def to_dict(self) -> dict:
        return {"n": self.n, "mean_effect": self.mean_effect, "flipped": self.flipped}


def resolved_patches(
    probed: ProbedModel, text: str, source: str, patches: list[tuple[str, Position]]
) -> list[tuple[Site, int]]:
    """(Site, position) pairs, checked: sites by the names ``invert`` takes, positions as in
    ``invert`` or by name, and the source as long as the input, so that a position means the same
    token slot in both."""
    for which in (text, source):
        probed.task.validate(which)
    n_positions, n_source = len(probed.task.encode(text)) - 1, len(probed.task.encode(source)) - 1
    if n_source != n_positions:
        raise UserError(
            f"the source has {n_source} positions, the input {n_positions}: "
            "patched positions must line up, so give a source of the same length"
        )
    if not patches:
        raise UserError("name at least one site to patch in `patches` (SITE@POSITION)")
    return [(probed.site(site), resolve_position(probed, text, position)) for site, position in patches]


def _differences(logits: torch.Tensor, metrics: list[Metric]) -> torch.Tensor:
    """LD of each row of ``logits`` (B, V) by its metric: (B,), NaN where a metric has none."""
    return torch.tensor(
        [float(row[m.answer] - row[m.alt]) if m.answer is not None else float("nan") for row, m in zip(logits, metrics)]
    )


def _effect(clean: float, patched: float, source: float) -> float | None:
    if clean != clean:  # NaN: no logit difference to move
        return None
    if abs(clean - patched) <= UNCHANGED:
        return 0.0
    return (clean - patched) / (clean - source) if abs(clean - source) > UNCHANGED else None


def patch_pairs(
    probed: ProbedModel,
    pairs: list[tuple[str, str]],
    patches: list[tuple[str, Position]],
    metrics: list[Metric] | None = None,
) -> PatchSummary:
    """Patch each (input, source) pair at ``patches`` (positions per input: by name, or as in
    ``invert``), in one batch; measured by each pair's task metric unless ``metrics`` are given."""
    if not pairs:
        raise UserError("no input pairs to patch: give at least one (input, source) pair")
    per_input = [resolved_patches(probed, text, source, patches) for text, source in pairs]
    return patch_batch(probed, pairs, per_input, metrics)


def patch_batch(
    probed: ProbedModel,
    pairs: list[tuple[str, str]],
    per_input: list[list[tuple[Site, int]]],
    metrics: list[Metric] | None = None,
) -> PatchSummary:
    """Patch each pair at its own checked (site, position) pairs, in batched forward passes."""
    metrics = metrics or [task_metric(probed, text, source) for text, source in pairs]
    ids, _ = pad_batch([probed.task.encode(t) for pair in pairs for t in pair], probed.task.tokenizer.pad_id)
    ids = ids.to(probed.device)
    inputs, sources = ids[0::2], ids[1::2]
    masks = position_masks(per_input, inputs.shape[1])
    source_values = probed.hook_values(sources, sorted(masks))
    rows, at = torch.arange(len(pairs)), torch.tensor([m.position for m in metrics])
    clean = probed.device_logits(inputs)[rows, at].float().cpu()
    from_source = probed.device_logits(sources)[rows, at].float().cpu()
    patched = probed.patched_logits(inputs, masks, source_values)[rows, at].float().cpu()
    results = [
        _result(probed, pair, row_patches, metric, clean[i], patched[i], from_source[i])
        for i, (pair, row_patches, metric) in enumerate(zip(pairs, per_input, metrics))
    ]
    effects = [r.effect for r in results if r.effect is not None]
    flipped = sum(r.patched.prediction == r.source_prediction for r in results) / len(results)
    return PatchSummary(len(results), sum(effects) / len(effects) if effects else None, flipped, results)


def _result(probed, pair, row_patches, metric, clean, patched, from_source) -> PatchResult:
    tok = probed.task.tokenizer
    lds = _differences(torch.stack([clean, patched, from_source]), [metric] * 3).tolist()
    result = PatchResult(
        input=pair[0],
        source=pair[1],
        patches=[{"site": site.name, "position": position} for site, position in row_patches],
        metric=metric.description,
        clean=Prediction(tok.token_str(int(clean.argmax())), None if metric.answer is None else lds[0]),
        patched=Prediction(tok.token_str(int(patched.argmax())), None if metric.answer is None else lds[1]),
        source_prediction=tok.token_str(int(from_source.argmax())),
        effect=_effect(*lds),
    )
    if metric.answer is None:
        log_clean, log_patched = clean.log_softmax(-1), patched.log_softmax(-1)
        result.kl = float((log_clean.exp() * (log_clean - log_patched)).sum())
        result.top_token_changed = int(clean.argmax()) != int(patched.argmax())
    return result


def patch(
    probed: ProbedModel,
    text: str,
    source: str,
    patches: list[tuple[str, Position]],
    metric: Metric | None = None,
) -> PatchResult:
    """Patch the activations at ``patches`` (site name, position) of ``text``'s run with ``source``'s,
    and measure the clean, patched and source runs by ``metric`` (the task's by default)."""
    return patch_pairs(probed, [(text, source)], patches, [metric] if metric else None).results[0]


def contrast_pairs(probed: ProbedModel, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` held-out inputs, each with its contrast from the task's own generator (``Task.contrast``);
    inputs that have none (a counting input whose letters all occur once) are passed over.

    Args:
        n: Held-out inputs, each with its contrast.
        seed: Seed of the inputs drawn.
    """
    if n < 1:
        raise UserError(f"`n` must be at least 1, got {n}")
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    for _ in range(20 * n):
        text = probed.task.sample_texts(rng, 1, split="heldout")[0]
        try:
            pairs.append((text, probed.task.contrast(text, rng)))
        except UserError:
            continue
        if len(pairs) == n:
            return pairs
    raise UserError(f"the {probed.task.name} task gave contrasts for only {len(pairs)} of {20 * n} inputs")
