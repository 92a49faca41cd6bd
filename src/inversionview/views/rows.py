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
    """Members of the preimage among the scheduled (and refined) samples."""
    outside: int
    inside_hidden: int
    outside_hidden: int
    searched: int = 0
    """Members drawn by the boundary search: shown, flagged, and not counted in ``inside``."""


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
    searched = sum(row[0].boundary_search for row in inside_rows)
    counts = SideCounts(
        len(inside_rows) - searched, len(outside_rows), len(inside_rows) - n_in, len(outside_rows) - n_out, searched
    )
    return [*inside_rows[:n_in], EPSILON_LINE, *outside_rows[:n_out]], counts


def side_summary(counts: SideCounts) -> str:
    """One line on both sides of ε, plain when one side is empty."""
    searched = f" (and {counts.searched} more from the boundary search)" if counts.searched else ""
    if counts.outside == 0:
        return (
            f"{counts.inside} distinct samples, all inside ε{searched}: "
            "no sample fell outside, so the boundary is not shown"
        )
    if counts.inside + counts.searched == 0:
        return f"{counts.outside} distinct samples, none inside ε"
    return f"{counts.inside} distinct inside ε{searched}, {counts.outside} outside"


def distance_text(distance: float, epsilon: float, digits: int = 3) -> str:
    """A distance with ``digits`` decimals, or more where fewer would print it as ε itself: a row's
    side of the ε line stays visible in its figure (0.1003 is outside ε = 0.1, 0.0998 inside)."""
    shown = f"{distance:.{digits}f}"
    while distance != epsilon and float(shown) == round(epsilon, digits) and digits < 9:
        digits += 1
        shown = f"{distance:.{digits}f}"
    return shown


def hidden_note(hidden: int, side: str) -> str | None:
    return f"… {hidden} more distinct {side} ε" if hidden else None
