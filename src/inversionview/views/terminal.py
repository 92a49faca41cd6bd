"""Rendering a reading in the terminal with rich."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from inversionview.inversion.result import InversionResult, Sample
from inversionview.views.colors import bar, color_rgb, text_rgb
from inversionview.views.rows import EPSILON_LINE, shown_rows


def _token_text(sample: Sample, show_colors: bool) -> Text:
    line = Text()
    for index, (token, value) in enumerate(zip(sample.tokens, sample.probability_change)):
        if index == 0:
            continue  # BOS
        style = ""
        if show_colors:
            bg = color_rgb(value)
            style = f"rgb{text_rgb(bg)} on rgb{bg}"
        if index == sample.best_position:
            style += " underline bold"
        line.append(token, style=style.strip())
    return line


def render(result: InversionResult, console: Console, *, limit: int = 40, show_colors: bool = True) -> None:
    """Print the query, then distinct samples nearest first with a distance bar and the ε line."""
    q, s = result.query, result.settings
    marked = Text()
    for index, token in enumerate(q.tokens):
        marked.append(token if index else "", style="reverse bold" if index == q.position else "")
    query_token = q.tokens[q.position]
    console.print(Text.assemble("query ", marked, f"  position {q.position} ({query_token})  site {q.site}"))
    if result.annotation:
        console.print(f"       {result.annotation}", style="dim")
    console.print(
        f"{s.samples} samples ({s.schedule}), {s.metric} distance, ε = {s.epsilon:g}: "
        f"{result.precision:.1%} inside the ε-preimage  [{result.seconds:.2f} s]",
        style="dim",
    )
    scale = max(2 * s.epsilon, 1e-9)
    shown, left_out = shown_rows(result, limit)
    for row in shown:
        if row is EPSILON_LINE:
            console.print(f"{'─' * 12} ε = {s.epsilon:g} {'─' * 30}", style="bold yellow")
            continue
        sample, count = row
        line = Text(f"{bar(sample.distance, scale)} {sample.distance:6.3f} ")
        line.append_text(_token_text(sample, show_colors))
        if count > 1:
            line.append(f"  ×{count}", style="dim")
        if sample.annotation:
            line.append(f"  {sample.annotation}", style="dim")
        console.print(line)
    if left_out:
        console.print(f"… {left_out} more distinct samples (--limit, or --json for all)", style="dim")
