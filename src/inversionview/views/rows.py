"""Which rows a view of a reading shows, and where its ε line goes (pure: every view uses this).

A reading is read by its contrast: what the samples inside ε share and the samples just outside do
not. So a view shows both sides: the nearest members of the preimage, the ε line, then the nearest
samples outside it, with how many of each it leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass

from inversionview.inversion.result import InversionResult, Sample

EPSILON_LINE = None
"""Stands in the row list where the ε line is drawn."""


@dataclass(frozen=True)
class SideCounts:
    """Distinct samples on each side of ε, and how many of them a view leaves out."""

    inside: int
    outside: int
    inside_hidden: int
    outside_hidden: int


def default_outside(limit: int) -> int:
    """Rows kept for samples outside ε when the user does not say: a quarter of the view, so that
    most of it shows the preimage (the paper's viewer showed 60-80 % inside)."""
    return max(1, limit // 4)


def shown_rows(
    result: InversionResult, limit: int, outside: int | None = None
) -> tuple[list[tuple[Sample, int] | None], SideCounts]:
    """At most ``limit`` distinct samples, each with how often it was drawn: the nearest inside ε,
    the ε line (``EPSILON_LINE``), then up to ``outside`` of the nearest outside it (a quarter of
    ``limit`` by default). Rows one side does not need go to the other."""
    outside = default_outside(limit) if outside is None else outside
    unique = result.unique_samples()
    inside_rows = [row for row in unique if row[0].in_preimage]
    outside_rows = [row for row in unique if not row[0].in_preimage]
    n_out = min(len(outside_rows), outside, limit)
    n_in = min(len(inside_rows), limit - n_out)
    n_out = min(len(outside_rows), limit - n_in)  # rows the inside side leaves unused
    counts = SideCounts(len(inside_rows), len(outside_rows), len(inside_rows) - n_in, len(outside_rows) - n_out)
    return [*inside_rows[:n_in], EPSILON_LINE, *outside_rows[:n_out]], counts


def side_summary(counts: SideCounts) -> str:
    """One line on both sides of ε, plain when one side is empty."""
    if counts.outside == 0:
        return f"{counts.inside} distinct samples, all inside ε: no sample fell outside, so the boundary is not shown"
    if counts.inside == 0:
        return f"{counts.outside} distinct samples, none inside ε"
    return f"{counts.inside} distinct inside ε, {counts.outside} outside"


def hidden_note(hidden: int, side: str) -> str | None:
    return f"… {hidden} more distinct {side} ε" if hidden else None
