"""Feature consistency: which features of the query input every member of the preimage shares.

A hypothesis is a function f of the input (``Task.features``). Its consistency is the share of the
distinct members of the preimage among a reading's samples whose value equals the query's; its
baseline the same share among inputs drawn from the task's distribution (seeded). A feature the
activation keeps is consistent far beyond chance; one it does not keep varies as by chance.

Each distinct member of a reading counts by the inverse of its chance of being among the samples at
all (``inclusion.py``), so that the shares estimate the whole preimage's, not the decoder's favourites'.
"""

from __future__ import annotations

import importlib.util
import inspect
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from inversionview.decoder.model import Decoder
from inversionview.errors import UserError
from inversionview.interpret.inclusion import inclusion_chances
from inversionview.inversion.result import InversionResult
from inversionview.probed.model import ProbedModel

ENCODED = 0.9
"""Consistency from which a feature is judged encoded (when it is also ``LIFT`` above its baseline)."""
PARTLY = 0.5
"""Consistency from which a feature is judged partly encoded (with the same lift)."""
LIFT = 0.1
MIN_MEMBERS = 5
"""Fewer distinct members than this are too few for a verdict, which says so."""
TOO_FEW = "too few members"
BASELINE_INPUTS = 500
MEMBERS_MEASURED = 2000
"""Members beyond this many are measured on a seeded sample of them (an exact preimage may hold
hundreds of thousands): the share is estimated to within about a point."""


@dataclass
class FeatureVerdict:
    name: str
    query_value: str
    consistency: float | None
    baseline: float | None
    verdict: str
    """"encoded", "partly", "not", or "too few members"."""
    n_members: int


def _value(feature, text: str, position: int):
    try:
        return feature(text, position)
    except (UserError, ValueError, IndexError, KeyError, StopIteration):
        return None  # the feature is not defined for this input


def _share(feature, texts: list[str], positions: list[int], wanted, weights: list[float] | None = None) -> float | None:
    weights = weights or [1.0] * len(texts)
    values = [(_value(feature, text, at), w) for text, at, w in zip(texts, positions, weights)]
    defined = [(v, w) for v, w in values if v is not None]
    total = sum(w for _, w in defined)
    return sum(w for v, w in defined if v == wanted) / total if defined else None


def verdict_of(consistency: float | None, baseline: float | None, n_members: int) -> str:
    if n_members < MIN_MEMBERS or consistency is None:
        return TOO_FEW
    lifted = baseline is None or consistency >= baseline + LIFT
    if consistency >= ENCODED and lifted:
        return "encoded"
    if consistency >= PARTLY and lifted:
        return "partly"
    return "not"


def feature_verdicts(
    probed: ProbedModel, decoder: Decoder, result: InversionResult, *, features: dict | None = None, seed: int = 0
) -> list[FeatureVerdict]:
    """Every feature's consistency over the distinct members of ``result``'s preimage (scheduled
    samples inside ε, each counted by the inverse of its chance of being drawn), against its
    baseline, and its verdict; ranked by the lift over chance."""
    read_at = members_read_at(result)
    members = list(read_at)
    weights = truncated([1 / chance for chance in inclusion_chances(probed, decoder, result, members)])
    weights = dict(zip(members, weights))
    query = result.query
    return verdicts_over(
        probed, members, query.text, query.position, features=features, seed=seed, weights=weights, read_at=read_at
    )


def members_read_at(result: InversionResult) -> dict[str, int]:
    """The distinct members among ``result``'s scheduled samples, each with the position where its
    activation matches the query (its best position)."""
    return {s.text: s.best_position for s in result.samples if s.in_preimage and not s.boundary_search}


def truncated(weights: list[float]) -> list[float]:
    """Importance weights capped at √n times their mean (truncated importance sampling, Ionides
    2008): a handful of very rare members cannot outweigh all the others."""
    if not weights:
        return weights
    cap = sum(weights) / len(weights) * len(weights) ** 0.5
    return [min(w, cap) for w in weights]


def verdicts_over(
    probed: ProbedModel,
    members: list[str],
    text: str,
    position: int,
    *,
    features: dict | None = None,
    seed: int = 0,
    weights: dict[str, float] | None = None,
    read_at: dict[str, int] | None = None,
) -> list[FeatureVerdict]:
    """Every feature's consistency over ``members`` (deduplicated) for the query ``text`` read at
    ``position``, against its baseline, and its verdict; ranked by the lift over chance. The members
    may come from decoder samples (each counted by its ``weights`` and read at its best position,
    ``read_at``: in free text the same word may sit elsewhere) or from the exact preimage alike (all
    counted once, at ``position``)."""
    features = features or probed.task.features()
    members = list(dict.fromkeys(members))
    n_members = len(members)
    if n_members > MEMBERS_MEASURED:
        members = random.Random(seed).sample(members, MEMBERS_MEASURED)
    drawn = _baseline_inputs(probed, seed)
    verdicts = []
    for name, feature in features.items():
        wanted = _value(feature, text, position)
        member_weights = [weights[m] for m in members] if weights else None
        at = [(read_at or {}).get(m, position) for m in members]
        consistency = _share(feature, members, at, wanted, member_weights) if members else None
        baseline = _share(feature, drawn, [position] * len(drawn), wanted) if drawn else None
        verdict = verdict_of(consistency, baseline, n_members)
        verdicts.append(FeatureVerdict(name, _shown(wanted), consistency, baseline, verdict, n_members))
    return sorted(verdicts, key=lambda v: -((v.consistency or 0) - (v.baseline or 0)))


def _baseline_inputs(probed: ProbedModel, seed: int) -> list[str]:
    try:
        return probed.task.sample_texts(random.Random(seed), BASELINE_INPUTS, split="any")
    except UserError:
        return []  # a free-text model with no corpus: no baseline


def _shown(value) -> str:
    if isinstance(value, frozenset):
        return "{" + ", ".join(map(str, sorted(value))) + "}"
    return str(value)


def explanation(verdicts: list[FeatureVerdict]) -> str:
    """One sentence: what the activation keeps, what it keeps in part, and what it does not."""
    if not verdicts or verdicts[0].verdict == TOO_FEW:
        n = verdicts[0].n_members if verdicts else 0
        return f"too few members of the preimage among the samples ({n}) for a verdict: draw more samples"
    kept = [
        f"{v.name} = {v.query_value} ({v.consistency:.2f}{_against(v)})" for v in verdicts if v.verdict == "encoded"
    ]
    partly = [f"{v.name} ({v.consistency:.2f}{_against(v)})" for v in verdicts if v.verdict == "partly"]
    dropped = [v.name for v in verdicts if v.verdict == "not"]
    parts = [f"keeps {_join(kept)}" if kept else "keeps none of the features"]
    if partly:
        parts.append(f"partly {_join(partly)}")
    if dropped:
        parts.append(f"not {_join(dropped)}")
    return "; ".join(parts)


def _against(verdict: FeatureVerdict) -> str:
    return "" if verdict.baseline is None else f" against {verdict.baseline:.2f} by chance"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def explain(probed: ProbedModel, decoder: Decoder, result: InversionResult, **options) -> InversionResult:
    """``result`` with its feature table and sentence filled in (``features``, ``explanation``)."""
    verdicts = feature_verdicts(probed, decoder, result, **options)
    result.features = [asdict(v) for v in verdicts]
    result.explanation = explanation(verdicts)
    return result


def load_features(path: Path) -> dict:
    """The plain functions ``name(text, position) -> value`` defined in a Python file: the user's own
    features. This runs the file's code, as importing it would."""
    if not path.is_file() or path.suffix != ".py":
        raise UserError(f"--features {path}: name a Python file of functions name(text, position) -> value")
    spec = importlib.util.spec_from_file_location(f"inversionview_features_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code may raise anything; say where, in one line
        raise UserError(f"--features {path}: running it failed ({type(exc).__name__}: {exc})") from None
    found = {
        name: value
        for name, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")
    }
    if not found:
        raise UserError(f"--features {path} defines no functions")
    return found
