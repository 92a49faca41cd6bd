"""HTML rendering of a reading: the one renderer that the web page and the report both use.

Everything is self-contained (inline CSS, no scripts, no network): sample texts stay readable as
text, hovering a token shows its position's distance and colour value.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from inversionview.errors import UserError
from inversionview.inversion.result import InversionResult, Sample
from inversionview.paths import output_file
from inversionview.views.colors import color_rgb, text_rgb
from inversionview.views.rows import EPSILON_LINE, distance_text, hidden_note, shown_rows, side_summary

CSS = """
.iv-view { font-family: ui-sans-serif, system-ui, sans-serif; font-size: 14px; color: #222; margin: 0 0 18px 0; }
.iv-head { margin-bottom: 6px; }
.iv-head .iv-site { font-weight: 600; }
.iv-meta { color: #666; font-size: 12px; margin-bottom: 8px; }
.iv-row { display: flex; align-items: flex-start; gap: 8px; padding: 1px 0; }
.iv-bar { width: 90px; height: 10px; margin-top: 4px; background: #eee; border-radius: 2px; flex: none; }
.iv-bar > div { height: 100%; background: #4a78b5; border-radius: 2px; }
.iv-dist { width: 52px; text-align: right; font-variant-numeric: tabular-nums; flex: none; }
.iv-tokens { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap;
             overflow-wrap: anywhere; min-width: 0; }
.iv-tok { padding: 0 1px; border-radius: 2px; }
.iv-best { outline: 2px solid #111; outline-offset: -1px; font-weight: 700; }
.iv-query { text-decoration: underline; font-weight: 700; }
.iv-count, .iv-note { color: #777; font-size: 12px; }
.iv-eps { border-top: 2px dashed #d08700; margin: 4px 0; position: relative; height: 0; }
.iv-eps span { position: absolute; right: 0; top: -9px; background: #fff; color: #d08700;
               font-size: 11px; padding: 0 4px; }
.iv-legend { color: #555; font-size: 12px; margin: 2px 0 8px 0; display: flex; flex-wrap: wrap; gap: 14px; }
.iv-legend .iv-tok { font-family: ui-monospace, monospace; }
.iv-eps-key { display: inline-block; width: 28px; margin: 0 4px 3px 0; vertical-align: middle;
              border-top: 2px dashed #d08700; }
.iv-bar-key { display: inline-block; vertical-align: middle; width: 40px; height: 10px; background: #eee;
              border-radius: 2px; }
.iv-bar-key > span { display: block; width: 50%; height: 100%; background: #4a78b5; border-radius: 2px; }
.iv-explain { font-size: 12px; margin: 4px 0 8px 0; }
.iv-explain td, .iv-explain th { padding: 0 8px 0 0; text-align: left; }
.iv-attn td { padding: 0 2px; font-family: ui-monospace, monospace; text-align: center; }
"""


def _token_spans(
    tokens: list[str],
    colors: list[float] | None,
    distances: list[float] | None,
    mark: int | None,
    mark_class: str,
    show_colors: bool,
) -> str:
    spans = []
    for index, token in enumerate(tokens):
        if index == 0:
            continue  # BOS is position 0 but is not text
        style = ""
        value = colors[index] if colors else 0.0
        if show_colors and colors:
            bg = color_rgb(value)
            style = f' style="background: rgb{bg}; color: rgb{text_rgb(bg)}"'
        hover = [f"position {index}"]
        if distances:
            hover.append(f"distance {distances[index]:.4f}")
        if colors:
            hover.append(f"Δp {value:+.3f}")
        classes = "iv-tok" + (f" {mark_class}" if index == mark else "")
        spans.append(f'<span class="{classes}" title="{escape(" · ".join(hover))}"{style}>{escape(token)}</span>')
    return "".join(spans)


def _sample_row(sample: Sample, count: int, epsilon: float, scale: float, show_colors: bool) -> str:
    width = min(100.0, 100.0 * sample.distance / scale) if scale > 0 else 0.0
    tokens = _token_spans(
        sample.tokens,
        sample.probability_change,
        sample.position_distances,
        sample.best_position,
        "iv-best",
        show_colors,
    )
    extra = f'<span class="iv-count">×{count}</span>' if count > 1 else ""
    note = f'<span class="iv-note">{escape(sample.annotation)}</span>' if sample.annotation else ""
    return (
        f'<div class="iv-row{" iv-in" if sample.in_preimage else " iv-out"}">'
        f'<div class="iv-bar"><div style="width: {width:.1f}%"></div></div>'
        f'<span class="iv-dist">{distance_text(sample.distance, epsilon)}</span>'
        f'<span class="iv-tokens">{tokens}</span>{extra}{note}</div>'
    )


def _eps_line(epsilon: float) -> str:
    return f'<div class="iv-eps" role="separator"><span>ε = {epsilon:g}</span></div>'


def legend(epsilon: float, scale: float) -> str:
    """What the colours, the bar and the dashed line mean."""
    more, less = color_rgb(0.6), color_rgb(-0.6)
    return (
        '<div class="iv-legend">'
        f'<span><span class="iv-tok" style="background: rgb{more}">red</span> / '
        f'<span class="iv-tok" style="background: rgb{less}; color: rgb{text_rgb(less)}">blue</span>: '
        "the query made the token more / less likely than no information did</span>"
        f'<span><span class="iv-bar-key"><span></span></span> distance to the query (full bar: {scale:g})</span>'
        f'<span><span class="iv-eps-key"></span>ε = {epsilon:g}: members above, non-members below</span>'
        '<span><span class="iv-best">x</span> best position</span></div>'
    )


def render_features(result: InversionResult) -> str:
    """The feature table of an explained reading and its sentence ("" when it was not explained)."""
    if result.features is None:
        return ""

    def cell(value) -> str:
        return "-" if value is None else f"{value:.2f}"

    def interval(f) -> str:
        return "-" if f["interval"] is None else "{:.2f}–{:.2f}".format(*f["interval"])

    def verdict(f) -> str:
        return escape(f["verdict"]) + (f"<br><small>{escape(f['reason'])}</small>" if f["reason"] else "")

    rows = "".join(
        f"<tr><td>{escape(f['name'])}</td><td><code>{escape(f['query_value'])}</code></td>"
        f"<td>{cell(f['consistency'])}</td><td>{interval(f)}</td><td>{cell(f['plain_share'])}</td>"
        f"<td>{'-' if f['effective_members'] is None else round(f['effective_members'])}</td>"
        f"<td>{cell(f['baseline'])}</td><td>{verdict(f)}</td></tr>"
        for f in result.features
    )
    return (
        f'<div class="iv-explain"><b>{escape(result.explanation)}</b>'
        "<table><tr><th>feature</th><th>query</th><th>share</th><th>interval (90 %)</th><th>found</th>"
        "<th>effective members</th><th>chance</th><th>verdict</th></tr>"
        f"{rows}</table></div>"
    )


def render_result(
    result: InversionResult, *, show_colors: bool = True, limit: int = 60, outside: int | None = None
) -> str:
    """One reading as an HTML fragment: the query, a legend, then distinct samples on both sides of
    ε, nearest first (at most ``limit``, ``outside`` of them outside ε: a quarter by default)."""
    q, s = result.query, result.settings
    query_tokens = _token_spans(q.tokens, None, None, q.position, "iv-query", False)
    note = f' <span class="iv-note">{escape(result.annotation)}</span>' if result.annotation else ""
    scale = max(2 * s.epsilon, 1e-9)
    shown, counts = shown_rows(result, limit, outside)
    rows = []
    for row in shown:
        if row is EPSILON_LINE:
            if hidden := hidden_note(counts.inside_hidden, "inside"):
                rows.append(f'<div class="iv-meta">{escape(hidden)}</div>')
            rows.append(_eps_line(s.epsilon))
        else:
            rows.append(_sample_row(*row, s.epsilon, scale, show_colors))
    if hidden := hidden_note(counts.outside_hidden, "outside"):
        rows.append(f'<div class="iv-meta">{escape(hidden)}</div>')
    boundary = f'<div class="iv-meta">{escape(result.boundary_note)}</div>' if result.boundary_note else ""
    return (
        '<div class="iv-view">'
        f'<div class="iv-head"><span class="iv-tokens">{query_tokens}</span> · position {q.position} '
        f'(<code>{escape(q.tokens[q.position])}</code>) · <span class="iv-site">{escape(q.site)}</span>{note}</div>'
        f'<div class="iv-meta">{s.samples} samples ({escape(s.schedule)}), {s.metric} distance, ε = {s.epsilon:g}: '
        f"<b>{result.precision:.1%}</b> inside the ε-preimage · {escape(side_summary(counts))} · "
        f"{result.seconds:.2f} s</div>"
        + render_features(result)
        + boundary
        + legend(s.epsilon, scale)
        + "".join(rows)
        + "</div>"
    )


def render_attention(tokens: list[str], weights: list[float], position: int, head: str) -> str:
    """One head's attention from the query position over the input, as a row of shaded cells."""
    cells = []
    for index, (token, weight) in enumerate(zip(tokens, weights)):
        bg = color_rgb(weight)
        cells.append(
            f'<td title="{escape(f"{token} (position {index}): weight {weight:.3f}")}" '
            f'style="background: rgb{bg}; color: rgb{text_rgb(bg)}">{escape(token)}</td>'
        )
    return (
        f'<div class="iv-view"><div class="iv-meta">{escape(head)}: attention from position {position}</div>'
        f'<table class="iv-attn"><tr>{"".join(cells)}</tr></table></div>'
    )


def document(fragments: list[str], title: str) -> str:
    """A complete, self-contained HTML page around rendered fragments."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f'<body style="margin: 24px"><h2 style="font-family: sans-serif">{escape(title)}</h2>'
        + "\n".join(fragments)
        + "</body></html>\n"
    )


def check_report_path(path: Path) -> None:
    """Refuse, before any work, a report path that is not an HTML file."""
    if path.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"-o {path}: the report is an HTML file; name it .html")
    output_file(path)


def render_figure(png: bytes, caption: str) -> str:
    """A PNG inside the page itself (a data URL): the report stays one self-contained file."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure class="iv-view"><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        f'<figcaption class="iv-meta">{escape(caption)}</figcaption></figure>'
    )


def write_report(
    results: list[InversionResult],
    path: Path,
    *,
    show_colors: bool = True,
    limit: int = 60,
    outside: int | None = None,
    figures: list[tuple[bytes, str]] = (),
) -> None:
    """Write readings (one query at several sites), and any ``figures`` (PNG, caption), as one
    self-contained HTML file."""
    check_report_path(path)
    query = results[0].query
    fragments = [render_result(r, show_colors=show_colors, limit=limit, outside=outside) for r in results]
    fragments += [render_figure(png, caption) for png, caption in figures]
    path.write_text(document(fragments, f"InversionView: {query.text!r} at position {query.position}"))
