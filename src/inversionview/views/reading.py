"""A reading as a user asks for it, at one or more sites: checked before any sampling, timed when it
would be long, then drawn, and explained when asked. The command line and the report read through
here; the page makes its readings the same way, one site at a time."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from inversionview.decoder.model import Decoder
from inversionview.errors import UserError, duration
from inversionview.interpret.explain import check_features, explain, load_features
from inversionview.inversion.invert import estimated_seconds, invert
from inversionview.inversion.result import InversionResult
from inversionview.inversion.spec import ReadingSpec
from inversionview.probed.model import ProbedModel
from inversionview.probed.query import Position, check_query, resolve_position

QUICK_SAMPLES = 20_000
"""Readings of up to this many samples start at once; larger ones are timed first."""
LONG_READING_SECONDS = 600.0

ProgressFor = Callable[[str], AbstractContextManager]
"""For a site, a context that yields the progress callback of its reading."""


def read_sites(
    probed: ProbedModel,
    decoder: Decoder,
    text: str,
    position: Position,
    sites: list[str],
    spec: ReadingSpec,
    *,
    features_file: Path | None = None,
    decoder_name: str = "bundled",
    allow_long: bool = False,
    progress_for: ProgressFor | None = None,
) -> list[InversionResult]:
    """One reading per site, explained when ``spec.explain`` (or ``features_file``, whose functions
    join the task's features) asks. A reading estimated over ``LONG_READING_SECONDS`` is refused
    unless ``allow_long``."""
    check_query(probed, text, position, sites)
    features = None
    if features_file is not None:  # run on the query before any sampling: a broken file costs nothing
        features = {**probed.task.features(), **load_features(features_file)}
        check_features(features, text, resolve_position(probed, text, position))
    explained = spec.explain or features is not None
    options = {**spec.invert_options(), "decoder_name": decoder_name, "inclusion": explained}
    check_duration(probed, decoder, text, position, sites, options, allow_long)
    results = []
    for site in sites:
        with (progress_for or (lambda _: nullcontext(None)))(site) as progress:
            results.append(invert(probed, decoder, text, position, site, progress=progress, **options))
    if explained:
        results = [explain(probed, decoder, result, features=features) for result in results]
    return results


def check_duration(
    probed: ProbedModel, decoder: Decoder, text: str, position: Position, sites: list[str], options: dict, allow: bool
) -> float | None:
    """Refuse, with its estimate, a reading of many samples that would run longer than
    ``LONG_READING_SECONDS`` here (unless ``allow``); the estimate in seconds, None when not timed."""
    samples = options["samples"]
    if samples <= QUICK_SAMPLES:
        return None
    rest = {key: value for key, value in options.items() if key != "samples"}
    seconds = len(sites) * estimated_seconds(decoder, probed, text, position, sites[0], samples, **rest)
    if seconds > LONG_READING_SECONDS and not allow:
        raise UserError(
            f"`samples` {samples:,} would take about {duration(seconds)} here (timed on a few samples); "
            "ask for fewer, or go ahead (`yes`)"
        )
    return seconds
