"""Colour values shared by every view (pure functions)."""

from __future__ import annotations


def color_rgb(value: float) -> tuple[int, int, int]:
    """Background for a probability difference in [-1, 1]: red where the query made the token more
    likely than the baseline did, blue where less, white at 0."""
    strength = min(1.0, abs(value)) ** 0.7
    fade = round(255 * (1 - strength))
    return (255, fade, fade) if value > 0 else (fade, fade, 255)


def text_rgb(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def bar(distance: float, scale: float, width: int = 12) -> str:
    """A bar of ``width`` cells, full at ``scale``."""
    cells = min(width, round(width * distance / scale)) if scale > 0 else 0
    return "█" * cells + "·" * (width - cells)
