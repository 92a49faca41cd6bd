"""Which rows a view of a reading shows, and where its ε line goes (pure: every view uses this)."""

from __future__ import annotations

from inversionview.inversion.result import InversionResult, Sample

EPSILON_LINE = None
"""Stands in the row list where the ε line is drawn."""


def shown_rows(result: InversionResult, limit: int) -> tuple[list[tuple[Sample, int] | None], int]:
    """The distinct samples a view shows, nearest first, each with how often it was drawn, and the
    ε line (``EPSILON_LINE``) before the first one outside ε (after the last shown if none is);
    with the number of distinct samples left out."""
    unique = result.unique_samples()
    rows: list[tuple[Sample, int] | None] = [(sample, count) for sample, count in unique[:limit]]
    first_outside = next((i for i, (sample, _) in enumerate(rows) if not sample.in_preimage), len(rows))
    rows.insert(first_outside, EPSILON_LINE)
    return rows, max(0, len(unique) - limit)
