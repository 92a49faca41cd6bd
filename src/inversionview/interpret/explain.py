"""Feature consistency: which features of the query input every member of the preimage shares.

A hypothesis is a function f of the input (``Task.features``). Its consistency is the share of the
distinct members of the preimage among a reading's samples whose value equals the query's; its
baseline the same share among inputs drawn from the task's distribution (seeded). A feature the
activation keeps is consistent far beyond chance; one it does not keep varies as by chance.

Each distinct member of a reading counts by the inverse of its chance of being among the samples at
all (``inclusion.py``), so that the shares estimate the whole preimage's, not the decoder's favourites'.
The weights are capped, and each share comes with its interval and its effective members
(``estimate.py``); a verdict is given only where those are clear, and where the members found, each
counted once, say the same: otherwise "uncertain", with the reason. So a verdict never contradicts
the samples on the screen.
"""

from __future__ import annotations

import importlib.util
import inspect
import random
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

from inversionview.decoder.model import Decoder
from inversionview.errors import UserError
from inversionview.interpret.estimate import ShareEstimate, share_estimate
from inversionview.interpret.inclusion import inclusion_chances
from inversionview.inversion.result import InversionResult
from inversionview.paths import features_file as checked_features_file
from inversionview.probed.model import ProbedModel

ENCODED = 0.9
"""Consistency from which a feature is judged encoded (when it is also ``LIFT`` above its baseline)."""
PARTLY = 0.5
"""Consistency from which a feature is judged partly encoded (with the same lift)."""
LIFT = 0.1
MIN_EFFECTIVE = 20
"""A verdict needs at least this many effective members (Kish) behind the weighted share."""
UNCERTAIN = "uncertain"
BASELINE_INPUTS = 500
MEMBERS_MEASURED = 2000
"""Members beyond this many are measured on a seeded sample of them (an exact preimage may hold
hundreds of thousands): the share is estimated to within about a point."""


@dataclass
class FeatureVerdict:
    name: str
    query_value: str
    consistency: float | None
    """The weighted share of members whose value is the query's: the estimate for the whole preimage."""
    plain_share: float | None
    """The same share among the distinct members found, each counted once."""
    interval: list[float] | None
    """[low, high]: the middle 90 % of the weighted share over a seeded bootstrap of the members."""
    effective_members: float | None
    """Kish's (Σw)²/Σw² of the members' capped weights."""
    baseline: float | None
    verdict: str
    """"encoded", "partly", "not", or "uncertain" (then ``reason`` says why)."""
    reason: str | None
    n_members: int


def _value(feature, text: str, position: int):
    try:
        return feature(text, position)
    except Exception:  # noqa: BLE001 (a feature, the user's too, is not defined for every input a decoder writes)
        return None


def check_features(features: dict, text: str, position: int) -> None:
    """Run every feature on the query input: one that fails there is a one-line error naming the
    feature, what it raised, and the input (a feature undefined on some samples is expected; on the
    query itself it is a mistake)."""
    for name, feature in features.items():
        try:
            feature(text, position)
        except Exception as exc:  # noqa: BLE001 (the user's code may raise anything)
            raise UserError(f"feature {name} raised {type(exc).__name__}: {exc} on the query {text!r}") from None


def verdict_of(consistency: float, baseline: float | None) -> str:
    """The verdict a share earns against its baseline: "encoded", "partly" or "not"."""
    lifted = baseline is None or consistency >= baseline + LIFT
    if consistency >= ENCODED and lifted:
        return "encoded"
    if consistency >= PARTLY and lifted:
        return "partly"
    return "not"


def judged(estimate: ShareEstimate | None, baseline: float | None, n_members: int) -> tuple[str, str | None]:
    """A verdict only where the evidence is clear: enough effective members, a weighted interval on
    one side of every threshold, and the members found (counted once) on the same side. Otherwise
    "uncertain", with the reason."""
    if estimate is None:
        return UNCERTAIN, f"not defined on any of the {n_members} members"
    if estimate.effective < MIN_EFFECTIVE:
        return UNCERTAIN, f"{estimate.effective:.0f} effective members, fewer than {MIN_EFFECTIVE}"
    low, high = verdict_of(estimate.low, baseline), verdict_of(estimate.high, baseline)
    if low != high:
        return UNCERTAIN, f"its interval {estimate.low:.2f}-{estimate.high:.2f} spans a threshold"
    plain = verdict_of(estimate.plain_low, baseline), verdict_of(estimate.plain_high, baseline)
    if plain[0] != plain[1]:
        interval = f"{estimate.plain_low:.2f}-{estimate.plain_high:.2f}"
        return UNCERTAIN, f"the members found share it {estimate.plain:.2f} ({interval}), across a threshold"
    if plain != (low, low):
        return UNCERTAIN, (
            f"the members found share it {estimate.plain:.2f}, the preimage they stand for {estimate.weighted:.2f}: "
            "the weighted share rests on rare members"
        )
    return low, None


def feature_verdicts(
    probed: ProbedModel, decoder: Decoder, result: InversionResult, *, features: dict | None = None, seed: int = 0
) -> list[FeatureVerdict]:
    """Every feature's consistency over the distinct members of ``result``'s preimage (scheduled
    samples inside ε, each counted by the inverse of its chance of being drawn), against its
    baseline, and its verdict; ranked by the lift over chance."""
    read_at = members_read_at(result)
    members = list(read_at)
    weights = dict(zip(members, [1 / chance for chance in inclusion_chances(probed, decoder, result, members)]))
    query = result.query
    return verdicts_over(
        probed, members, query.text, query.position, features=features, seed=seed, weights=weights, read_at=read_at
    )


def members_read_at(result: InversionResult) -> dict[str, int]:
    """The distinct members among ``result``'s scheduled samples, each with the position where its
    activation matches the query (its best position)."""
    return {s.text: s.best_position for s in result.samples if s.in_preimage and not s.boundary_search}


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
    exact: bool = False,
) -> list[FeatureVerdict]:
    """Every feature's consistency over ``members`` (deduplicated) for the query ``text`` read at
    ``position``, against its baseline, and its verdict; ranked by the lift over chance. The members
    may come from decoder samples (each counted by its ``weights`` and read at its best position,
    ``read_at``: in free text the same word may sit elsewhere) or, with ``exact``, be the exact
    preimage: all counted once at ``position``, their share the verdict's without an interval."""
    features = features or probed.task.features()
    members = list(dict.fromkeys(members))
    n_members = len(members)
    if n_members > MEMBERS_MEASURED:
        members = random.Random(seed).sample(members, MEMBERS_MEASURED)
    at = [(read_at or {}).get(m, position) for m in members]
    member_weights = [weights[m] for m in members] if weights else [1.0] * len(members)
    verdicts = []
    for name, feature in features.items():
        wanted = _value(feature, text, position)
        values = [_value(feature, member, where) for member, where in zip(members, at)]
        defined = [(v == wanted, w) for v, w in zip(values, member_weights) if v is not None]
        estimate = share_estimate([m for m, _ in defined], [w for _, w in defined], seed) if defined else None
        baseline_values = baseline_feature_values(probed, feature, position, seed)
        baseline = sum(v == wanted for v in baseline_values) / len(baseline_values) if baseline_values else None
        verdicts.append(_verdict(name, _shown(wanted), estimate, baseline, n_members, exact))
    return sorted(verdicts, key=lambda v: -((v.consistency or 0) - (v.baseline or 0)))


def _verdict(
    name: str, shown: str, estimate: ShareEstimate | None, baseline: float | None, n_members: int, exact: bool
) -> FeatureVerdict:
    if exact and estimate is not None:
        verdict, reason = verdict_of(estimate.weighted, baseline), None
    else:
        verdict, reason = judged(estimate, baseline, n_members)
    if estimate is None:
        return FeatureVerdict(name, shown, None, None, None, None, baseline, verdict, reason, n_members)
    interval = [round(estimate.low, 4), round(estimate.high, 4)]
    return FeatureVerdict(
        name,
        shown,
        round(estimate.weighted, 4),
        round(estimate.plain, 4),
        interval,
        round(estimate.effective, 1),
        None if baseline is None else round(baseline, 4),
        verdict,
        reason,
        n_members,
    )


_BASELINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per task: its baseline inputs by seed, and each feature's values over them by (feature, position,
seed), so that readings after the first (explain-map makes hundreds) draw and compute them no more."""


def baseline_feature_values(probed: ProbedModel, feature, position: int, seed: int) -> list:
    """``feature``'s defined values over the task's ``BASELINE_INPUTS`` seeded inputs read at
    ``position``: chance's share of a value is its share here. Computed once per (task, seed)."""
    cache = _BASELINES.setdefault(probed.task, {})
    drawn = ("inputs", seed, id(getattr(probed.task, "corpus", None)))  # a new corpus draws anew
    if drawn not in cache:
        try:
            cache[drawn] = probed.task.sample_texts(random.Random(seed), BASELINE_INPUTS, split="any")
        except UserError:
            cache[drawn] = []  # a free-text model with no corpus: no baseline
    key = (feature, position, *drawn)
    if key not in cache:
        values = (_value(feature, text, position) for text in cache[drawn])
        cache[key] = [value for value in values if value is not None]
    return cache[key]


def _shown(value) -> str:
    """A feature value as a reader writes it: a set in braces, a sequence of tokens joined."""
    if isinstance(value, frozenset):
        return "{" + ", ".join(map(str, sorted(value))) + "}"
    if isinstance(value, tuple | list):
        return " ".join(map(str, value))
    return str(value)


def explanation(verdicts: list[FeatureVerdict]) -> str:
    """One sentence: what the activation keeps, what it keeps in part, what it does not, and what
    the samples cannot yet tell."""
    if not verdicts or all(v.verdict == UNCERTAIN for v in verdicts):
        n = verdicts[0].n_members if verdicts else 0
        return f"no clear verdict from the {n} distinct members of the preimage among the samples: draw more samples"
    kept = [
        f"{v.name} = {v.query_value} ({v.consistency:.2f}{_against(v)})" for v in verdicts if v.verdict == "encoded"
    ]
    partly = [f"{v.name} ({v.consistency:.2f}{_against(v)})" for v in verdicts if v.verdict == "partly"]
    dropped = [v.name for v in verdicts if v.verdict == "not"]
    unsure = [v.name for v in verdicts if v.verdict == UNCERTAIN]
    parts = [f"keeps {_join(kept)}" if kept else "keeps none of the features"]
    if partly:
        parts.append(f"partly {_join(partly)}")
    if dropped:
        parts.append(f"not {_join(dropped)}")
    if unsure:
        parts.append(f"uncertain: {_join(unsure)}")
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


def load_features(features_file: Path) -> dict:
    """The plain functions ``name(text, position) -> value`` defined in the Python file ``features_file``:
    the user's own features. This runs the file's code, as importing it would."""
    path = checked_features_file(features_file)
    spec = importlib.util.spec_from_file_location(f"inversionview_features_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code may raise anything; say where, in one line
        raise UserError(f"`features_file` {path}: running it failed ({type(exc).__name__}: {exc})") from None
    found = {
        name: value
        for name, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")
    }
    if not found:
        raise UserError(f"`features_file` {path} defines no functions")
    return found
