"""Activation patching of a probed model: does the activation a reading describes carry the answer?

``patch`` runs the model on an input, on a source input, and on the input with the activations at
chosen (site, position) pairs taken from the source run, and measures each by the task's metric
(``causal/metrics.py``). ``effect`` = (LD_clean − LD_patched) / (LD_clean − LD_source): 0 when the
patch changes nothing, 1 when the patched run behaves like the source run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from inversionview.causal.metrics import Metric, task_metric
from inversionview.errors import UserError
from inversionview.inversion.invert import resolve_position
from inversionview.probed.model import ProbedModel
from inversionview.probed.patching import hook_values, patched_logits

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
    """(LD_clean − LD_patched) / (LD_clean − LD_source); None where the input and the source give the
    same LD (nothing to move), or for a metric without a logit difference."""
    kl: float | None = None
    """KL(clean ‖ patched) of the next-token distribution, for a free-text metric without answers."""
    top_token_changed: bool | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def resolved_patches(probed: ProbedModel, text: str, source: str, patches: list[tuple[str, int]]) -> list:
    """(Site, position) pairs, checked: sites by the names ``invert`` takes, positions as in
    ``invert`` (BOS = 0, negative from the end), and the source as long as the input, so that a
    position means the same token slot in both."""
    for which in (text, source):
        probed.task.validate(which)
    n_positions = len(probed.task.encode(text)) - 1
    if len(probed.task.encode(source)) - 1 != n_positions:
        raise UserError(
            f"the source has {len(probed.task.encode(source)) - 1} positions, the input {n_positions}: "
            "patched positions must line up, so give a source of the same length"
        )
    if not patches:
        raise UserError("name at least one --patch SITE@POSITION")
    return [(probed.site(site), resolve_position(position, n_positions)) for site, position in patches]


def patch(
    probed: ProbedModel,
    text: str,
    source: str,
    patches: list[tuple[str, int]],
    metric: Metric | None = None,
) -> PatchResult:
    """Patch the activations at ``patches`` (site name, position) of ``text``'s run with ``source``'s,
    and measure the clean, patched and source runs by ``metric`` (the task's by default)."""
    pairs = resolved_patches(probed, text, source, patches)
    metric = metric or task_metric(probed, text, source)
    ids, _ = probed.encode_batch([text, source])
    ids = ids.to(probed.device)
    model, layout = probed.model, probed.layout
    source_values = hook_values(model, layout, ids[1:], sorted({site for site, _ in pairs}))
    with torch.no_grad():
        plain = model(input_ids=ids, use_cache=False).logits[:, metric.position].float().cpu()  # (2, V)
    patched = patched_logits(model, layout, ids[:1], pairs, source_values)[0, metric.position].float().cpu()
    clean, from_source = plain[0], plain[1]
    tok = probed.task.tokenizer
    result = PatchResult(
        input=text,
        source=source,
        patches=[{"site": site.name, "position": position} for site, position in pairs],
        metric=metric.description,
        clean=Prediction(tok.token_str(int(clean.argmax())), _difference(clean, metric)),
        patched=Prediction(tok.token_str(int(patched.argmax())), _difference(patched, metric)),
        source_prediction=tok.token_str(int(from_source.argmax())),
        effect=None,
    )
    if metric.answer is None:
        result.kl = float((clean.log_softmax(-1).exp() * (clean.log_softmax(-1) - patched.log_softmax(-1))).sum())
        result.top_token_changed = int(clean.argmax()) != int(patched.argmax())
        return result
    change = result.clean.logit_diff - result.patched.logit_diff
    moved = result.clean.logit_diff - _difference(from_source, metric)
    if abs(change) <= UNCHANGED:  # nothing moved: no effect, whatever the source would do
        result.effect = 0.0
    elif abs(moved) > UNCHANGED:
        result.effect = change / moved
    return result


def _difference(logits: torch.Tensor, metric: Metric) -> float | None:
    if metric.answer is None:
        return None
    return float(logits[metric.answer] - logits[metric.alt])
