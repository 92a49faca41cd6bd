"""Rendering a reading in the terminal with rich."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from inversionview.causal.heads import HeadShare
from inversionview.inversion.result import InversionResult, Sample
from inversionview.views.colors import bar, color_rgb, text_rgb
from inversionview.views.rows import EPSILON_LINE, distance_text, hidden_note, shown_rows, side_summary


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


def _sample_line(sample: Sample, count: int, epsilon: float, scale: float, show_colors: bool) -> Text:
    line = Text(f"{bar(sample.distance, scale)} {distance_text(sample.distance, epsilon):>6s} ")
    line.append_text(_token_text(sample, show_colors))
    if count > 1:
        line.append(f"  ×{count}", style="dim")
    if sample.annotation:
        line.append(f"  {sample.annotation}", style="dim")
    return line


def render(
    result: InversionResult,
    console: Console,
    *,
    limit: int = 40,
    outside: int | None = None,
    show_colors: bool = True,
) -> None:
    """Print the query, then distinct samples on both sides of ε, nearest first, each with a
    distance bar: at most ``limit``, ``outside`` of them (a quarter by default) outside ε."""
    q, s = result.query, result.settings
    marked = Text()
    for index, token in enumerate(q.tokens):
        marked.append(token if index else "", style="reverse bold" if index == q.position else "")
    console.print(Text.assemble("query ", marked, f"  position {q.position} ({q.tokens[q.position]})  site {q.site}"))
    if result.annotation:
        console.print(f"       {result.annotation}", style="dim")
    shown, counts = shown_rows(result, limit, outside)
    console.print(
        f"{s.samples} samples ({s.schedule}), {s.metric} distance, ε = {s.epsilon:g}: "
        f"{result.precision:.1%} inside the ε-preimage; {side_summary(counts)}  [{result.seconds:.2f} s]",
        style="dim",
    )
    if result.boundary_note:
        console.print(result.boundary_note, style="dim")
    if result.refined:
        console.print(refinement_line(result.refined), style="dim")
    scale = max(2 * s.epsilon, 1e-9)
    for row in shown:
        if row is EPSILON_LINE:
            if note := hidden_note(counts.inside_hidden, "inside"):
                console.print(note, style="dim")
            console.print(f"{'─' * 12} ε = {s.epsilon:g} {'─' * 30}", style="bold yellow")
            continue
        console.print(_sample_line(*row, s.epsilon, scale, show_colors))
    if note := hidden_note(counts.outside_hidden, "outside"):
        console.print(note, style="dim")
    if counts.inside_hidden or counts.outside_hidden:
        console.print("(--limit and --outside show more; --json gives every sample)", style="dim")
    console.print(_legend(scale, show_colors), style="dim")


def _legend(scale: float, show_colors: bool) -> str:
    colours = "red / blue: the query made the token more / less likely than no information did; " if show_colors else ""
    return f"{colours}bar: distance to the query (full bar: {scale:g}); underlined: the best position"


def training_line(summary: dict, out: object) -> str:
    """The last line of ``train-decoder``: where the decoder is and the precision it reached (from
    its ``history.json``, ``decoder.train.run_summary``)."""
    line = f"saved decoder to {out}: {summary['steps']:,} steps, {summary['seconds'] / 60:.1f} min"
    if summary["precision"] is None:
        return line
    lowest = summary["lowest_site"]
    # Training's check reads fewer queries than the benchmark: say how many, and how sure it is.
    error = f" ± {summary['precision_se']:.1%}" if summary.get("precision_se") is not None else ""
    queries = f" on {summary['queries']} held-out queries a site" if summary.get("queries") else ""
    return (
        f"{line}, mean precision {summary['precision']:.1%}{error}{queries} "
        f"(lowest {lowest['site']} {lowest['precision']:.1%})"
    )


def refinement_line(refined: dict) -> str:
    """What refinement bought, beside the same samples without it."""
    plain = refined["without_refinement"]
    return (
        f"refined: {refined['distinct_members']:,} distinct members for {refined['evaluations']:,} probed evaluations "
        f"({refined['members_per_1000_evaluations']:g} members per 1,000), against {plain['distinct_members']:,} for "
        f"{plain['evaluations']:,} ({plain['members_per_1000_evaluations']:g}) without"
    )


def render_features(result: InversionResult, console: Console) -> None:
    """The feature table of an explained reading, then its sentence and the legend."""
    if result.features is None:
        return
    header = f"{'feature':14s} {'query':>8s} {'share':>6s} {'interval':>10s} {'found':>6s} {'eff.':>5s} {'chance':>7s}"
    console.print(f"{header}  verdict", style="bold")
    for f in result.features:
        interval = "-" if f["interval"] is None else "{:.2f}-{:.2f}".format(*f["interval"])
        effective = "-" if f["effective_members"] is None else f"{f['effective_members']:.0f}"
        verdict = f["verdict"] + (f": {f['reason']}" if f["reason"] else "")
        console.print(
            f"{f['name'][:14]:14s} {f['query_value'][:8]:>8s} {_cell(f['consistency']):>6s} {interval:>10s} "
            f"{_cell(f['plain_share']):>6s} {effective:>5s} {_cell(f['baseline']):>7s}  {verdict}",
            highlight=False,
        )
    console.print(result.explanation, style="bold")
    console.print(FEATURE_LEGEND, style="dim")


FEATURE_LEGEND = (
    "share: the members' share holding the query's value, each weighted by the inverse of its chance of "
    "being drawn; interval: its 90 % bootstrap; found: the share among the distinct members found; "
    "eff.: effective members; chance: the share among random inputs"
)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def head_share_lines(result: HeadShare, top: int = 10) -> list[str]:
    """The heads by share, most first, with their patching effect, and the rank agreement."""
    order = sorted(range(len(result.heads)), key=lambda i: -result.share[i])[:top]
    lines = [f"share of the residual stream at the answer position over {result.n} prompts (top {top})"]
    lines.append(f"{'head':28s} {'share':>6s} {'patch':>6s}")
    for i in order:
        effect = None if result.patch_effect is None else result.patch_effect[i]
        lines.append(
            f"{result.heads[i]:28s} {result.share[i]:6.2f} " + ("     -" if effect is None else f"{effect:6.2f}")
        )
    if result.rank_agreement is not None:
        agreement = result.rank_agreement
        lines.append(
            f"top-{top} overlap with patching {agreement['top_overlap']:.2f}, Spearman {agreement['spearman']}"
        )
    return lines


def position_lines(table: list[dict]) -> list[str]:
    """``tokens``' table: each position from the start and from the end, its token, and its names
    (which ``--position`` takes as well as the numbers)."""
    lines = ["position  from end  token            name"]
    for row in table:
        from_end = row["position"] - len(table)
        lines.append(f"{row['position']:8d}  {from_end:8d}  {row['token']:<15s}  {', '.join(row['names'])}".rstrip())
    return lines


def evaluation_lines(result, task) -> list[str]:
    """``evaluate``: the held-out accuracy, then each group's (a task's relations, templates, …)."""
    lines = [f"{task.name}: held-out accuracy {result.accuracy:.4f} on {result.n} inputs"]
    for group, columns in (result.groups or {}).items():
        lines.append(f"  {group}: " + ", ".join(f"{column} {value:.4f}" for column, value in columns.items()))
    return lines


def exact_lines(result) -> list[str]:
    """``exact``: the preimage's size in its space, then its listed members, nearest first."""
    lines = [f"exact ε-preimage of {result.query_text!r} at position {result.position}, {result.site}"]
    lines.append(
        f"{result.n_members:,} members of {result.space_size:,} inputs ({result.space}); {result.seconds:.1f} s"
    )
    lines += [f"  {m.distance:7.4f}  {m.text}  (best position {m.best_position})" for m in result.members]
    return lines


def completeness_lines(result) -> list[str]:
    """``completeness``: the true preimage's size, the decoder's precision and its recall curve."""
    recall = ", ".join(f"{k}: {v:.1%}" for k, v in result.recall.items())
    return [
        f"{result.n_members:,} true members among {result.space_size:,} inputs ({result.space})",
        f"precision {result.precision:.1%} of {result.samples:,} samples; recall after k samples: {recall}",
        "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()),
    ]


def patch_lines(result) -> list[str]:
    """``patch``: the clean, source and patched runs' predictions, and the effect."""

    def logit_diff(value: float | None) -> str:
        return "" if value is None else f" (LD {value:+.3f})"

    where = ", ".join(f"{p['site']}@{p['position']}" for p in result.patches)
    lines = [
        f"metric: {result.metric}",
        f"input   {result.input!r}: predicts {result.clean.prediction!r}" + logit_diff(result.clean.logit_diff),
        f"source  {result.source!r}: predicts {result.source_prediction!r}",
        f"patched {where}: predicts {result.patched.prediction!r}" + logit_diff(result.patched.logit_diff),
    ]
    if result.effect is not None:
        lines.append(f"effect {result.effect:.3f} (0: none; 1: as the source)")
    if result.kl is not None:
        lines.append(f"KL(clean ‖ patched) {result.kl:.4f}; top token changed: {result.top_token_changed}")
    return lines


def scan_lines(scan) -> list[str]:
    """``patch-scan``: the grid of mean effects, positions down and numbered components across."""
    lines = [f"mean effect over {scan.n} contrast pairs (rows: positions; columns: components)"]
    lines.append(" " * 14 + " ".join(f"{i:>6d}" for i in range(len(scan.components))))
    for row, effects in zip(scan.positions, scan.effect):
        lines.append(f"{row[:13]:13s} " + " ".join("     -" if e is None else f"{e:6.2f}" for e in effects))
    lines += [f"{i:>6d}  {component}" for i, component in enumerate(scan.components)]
    return lines


def contrast_lines(summary) -> list[str]:
    """``patch --source auto``: the mean effect over the held-out inputs and their contrasts."""
    effect = "none (no logit difference)" if summary.mean_effect is None else f"{summary.mean_effect:.3f}"
    return [f"{summary.n} held-out inputs and their contrasts: mean effect {effect}; flipped {summary.flipped:.1%}"]


def explain_map_lines(table, threshold: float = 0.5) -> list[str]:
    """``explain-map``: at each site, the features each position keeps (share of queries ≥ ``threshold``)."""
    lines = [f"features kept (share of {table.n} held-out queries judged encoded, ≥ {threshold} shown)"]
    for site, row in zip(table.sites, table.encoded):
        cells = [", ".join(f"{f} {v:.2f}" for f, v in cell.items() if v >= threshold) or "-" for cell in row]
        lines.append(f"{site:32s} " + " | ".join(f"{name}: {cell}" for name, cell in zip(table.positions, cells)))
    return lines
