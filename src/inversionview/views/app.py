"""The InversionView web page (Streamlit). Started by ``inversionview view``; every reading it shows
is rendered by ``views/html_render.py``, the same code that writes reports.

Its settings (``views/server.py``'s ``ViewerSettings``) come from the ``view`` command, through the
environment: a model given on the command line with its load options, and a models folder. The page
reads no other paths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from html import escape

import streamlit as st

from inversionview.causal.patch import patch
from inversionview.decoder.store import load_decoder
from inversionview.errors import UserError
from inversionview.interpret.explain import explain
from inversionview.inversion.invert import invert
from inversionview.inversion.result import InversionResult
from inversionview.inversion.spec import ReadingSpec
from inversionview.probed import load_probed
from inversionview.probed.metric import METRICS
from inversionview.probed.sites import HEAD_SITE_KIND, canonical_site
from inversionview.views.cache import LeastRecentlyUsed
from inversionview.views.html_render import CSS, render_attention, render_result
from inversionview.views.rows import default_outside
from inversionview.views.server import ModelChoice, ViewerSettings, model_choices

SHOWN_ROWS = 60


def example_input(task, rng: random.Random, split: str) -> str:
    """An input drawn from the task, or "" where there is none to draw (free text with no corpus)."""
    try:
        return task.sample_texts(rng, 1, split=split)[0]
    except UserError:
        return ""


@st.cache_resource(show_spinner="loading models…")
def load_models(choice: ModelChoice):
    probed = load_probed(choice.probed, **dict(choice.options))
    if choice.corpus:
        probed.use_corpus(**dict(choice.corpus))
    return probed, load_decoder(choice.decoder, probed)


@st.cache_resource
def reading_cache() -> LeastRecentlyUsed[InversionResult]:
    """Readings by their settings, shared by every session of this server: revisiting is instant.
    Bounded, so that a server left running does not grow without end."""
    return LeastRecentlyUsed()


def reading(
    choice: ModelChoice,
    text: str,
    position: int,
    site: str,
    samples: int,
    seed: int,
    metric: str,
    epsilon: float,
    schedule: str,
) -> InversionResult:
    def make() -> InversionResult:
        probed, decoder = load_models(choice)
        bar = st.progress(0.0, text=f"sampling {samples} inputs at {site}…")
        spec = ReadingSpec(samples=samples, seed=seed, metric=metric, epsilon=epsilon, schedule=schedule)
        result = invert(
            probed,
            decoder,
            text,
            position,
            site,
            **spec.invert_options(),
            decoder_name=choice.decoder or "bundled",
            inclusion=True,  # the page always explains
            progress=lambda done, total: bar.progress(done / total, text=f"sampled {done}/{total}"),
        )
        bar.empty()
        return explain(probed, decoder, result)  # the feature table costs milliseconds

    key = (choice, text, position, site, samples, seed, metric, epsilon, schedule)
    return reading_cache().get_or_make(key, make)


def attention_html(choice: ModelChoice, text: str, position: int, site_name: str) -> str | None:
    """For a per-head site, that head's attention from the query position over the input."""
    probed, _ = load_models(choice)
    site = probed.site(site_name)
    if site.kind != HEAD_SITE_KIND or not probed.reads_attention:
        return None
    ids, _ = probed.encode_batch([text])
    _, patterns = probed.activations(ids, [], attention_layers=(site.layer,))
    weights = patterns[site.layer][0, site.head, position, : position + 1].tolist()
    tokens = probed.query_tokens(text)[: position + 1]
    return render_attention(tokens, weights, position, site.name)


@dataclass(frozen=True)
class ReadingSettings:
    metric: str
    epsilon: float
    samples: int
    schedule: str
    seed: int
    show_colors: bool
    outside: int


def sidebar(probed) -> ReadingSettings:
    """The reading's settings, from the sidebar."""
    metrics = list(METRICS)
    metric = st.radio(
        "Distance",
        metrics,
        index=metrics.index(probed.default_metric),
        horizontal=True,
        format_func={"euclidean": "‖q−a‖/‖q‖", "cosine": "1 − cos", "whitened": "‖W(q−a)‖/‖Wq‖"}.get,
    )
    epsilon = st.number_input("ε", min_value=0.0, max_value=2.0, value=probed.default_epsilon, step=0.01, format="%.3f")
    samples = st.slider("Samples", min_value=50, max_value=2000, value=500, step=50)
    schedule = st.text_input(
        "Schedule",
        value="auto",
        help="'auto'; 'distinct' (every sample a different input); or TEMPERATURE:NOISE pairs like 1:0,0.5:0",
    )
    seed = st.number_input("Seed", min_value=0, value=0, step=1)
    show_colors = st.toggle("Colour tokens by probability change", value=True)
    outside = st.slider(
        "Rows outside ε",
        min_value=0,
        max_value=60,
        value=default_outside(SHOWN_ROWS),
        help=f"of the {SHOWN_ROWS} rows shown, how many go to the nearest samples outside ε",
    )
    return ReadingSettings(metric, float(epsilon), samples, schedule, int(seed), show_colors, outside)


def input_box(choice: ModelChoice, task) -> str:
    """The input to read: typed, or drawn at random from the task."""
    key = f"text::{choice.label}"
    if key not in st.session_state:
        st.session_state[key] = example_input(task, random.Random(0), "heldout")
    left, right = st.columns([5, 1])
    with right:
        st.write("")
        drawn = example_input(task, random.Random(), "any")  # "" when there is nothing to draw from
        if st.button("Random example", disabled=not drawn):
            st.session_state[key] = drawn
    with left:
        return st.text_input("Input", key=key)


def query_picker(probed, readable: list[str], text: str) -> tuple[int, str]:
    """The query position (a named one, or a clicked token) and the site (by layer), among the
    ``readable`` sites (those the decoder serves)."""
    task = probed.task
    tokens = probed.query_tokens(text)
    named = task.named_positions(text)
    interest = task.query_positions(text)
    default = interest[-1] if interest else len(tokens) - 1
    labels = [f"{i}:{tok}" for i, tok in enumerate(tokens)]
    named_pick = st.selectbox("Named position", ["(click a token below)", *named], index=0)
    picked = st.pills("Query position — click a token", labels, default=labels[default], key=f"pos::{text}")
    position = named[named_pick] if named_pick in named else labels.index(picked) if picked else default

    sites = [s for s in probed.sites() if canonical_site(s).name in readable]
    layers = sorted({s.layer for s in sites})
    layer = st.segmented_control("Layer", layers, default=layers[-1], format_func=lambda layer: f"layer {layer}")
    layer = layers[-1] if layer is None else layer
    in_layer = [s.name for s in sites if s.layer == layer]
    return position, st.selectbox("Site", in_layer, index=len(in_layer) - 1)


def contrast_of(task, text: str) -> str:
    """The task's contrast input for ``text`` (seeded), or "" where it has none."""
    try:
        return task.contrast(text, random.Random(0))
    except UserError:
        return ""


def patch_panel(probed, text: str, position: int, site: str) -> None:
    """Activation patching at the query position: does the activation read above carry the answer?"""
    with st.expander("Patch: run the input with activations taken from a source input"):
        source = st.text_input("Source (same length)", value=contrast_of(probed.task, text), key=f"source::{text}")
        names = [s.name for s in probed.sites() if s.kind != "hook_resid_mid"]
        sites = st.multiselect("Sites to patch at the query position", names, default=[site] if site in names else [])
        if not (source and sites and st.button("Patch")):
            return
        try:
            result = patch(probed, text, source, [(name, position) for name in sites])
        except UserError as exc:
            st.error(str(exc))
            return
        effect = "n/a" if result.effect is None else f"{result.effect:.3f}"
        st.html(render_patch(result, effect))


def render_patch(result, effect: str) -> str:
    rows = [
        ("input", result.input, result.clean.prediction, result.clean.logit_diff),
        ("source", result.source, result.source_prediction, None),
        (
            "patched",
            ", ".join(f"{p['site']}@{p['position']}" for p in result.patches),
            result.patched.prediction,
            result.patched.logit_diff,
        ),
    ]
    cells = "".join(
        f"<tr><td>{escape(name)}</td><td><code>{escape(what)}</code></td><td>{escape(prediction)}</td>"
        f"<td>{'' if ld is None else f'{ld:+.3f}'}</td></tr>"
        for name, what, prediction, ld in rows
    )
    return (
        f'<div class="iv-view"><div class="iv-meta">{escape(result.metric)}; effect <b>{effect}</b> '
        "(0: none; 1: as the source)</div><table><tr><th></th><th></th><th>prediction</th><th>LD</th></tr>"
        f"{cells}</table></div>"
    )


def saved_views(result: InversionResult, show_colors: bool) -> None:
    """Readings kept to compare side by side."""
    saved = st.session_state.setdefault("saved", [])
    if st.button("Save view for comparison"):
        saved.append(result)
    if saved:
        st.subheader(f"Saved views ({len(saved)})")
        if st.button("Clear saved views"):
            saved.clear()
            st.rerun()
        for column, view in zip(st.columns(min(3, len(saved))), saved[-3:]):
            with column:
                st.html(render_result(view, show_colors=show_colors, limit=25))


def main() -> None:
    st.set_page_config(page_title="InversionView", layout="wide")
    st.html(f"<style>{CSS}</style>")
    st.title("InversionView")
    choices = model_choices(ViewerSettings.from_environment())
    if not choices:
        st.error("No model with a decoder found: bundled models are missing and no models folder was given.")
        return
    with st.sidebar:
        labels = [c.label for c in choices]
        choice = choices[labels.index(st.selectbox("Probed model and decoder", labels))]
        try:
            probed, decoder = load_models(choice)
        except UserError as exc:
            st.error(str(exc))
            return
        settings = sidebar(probed)
    text = input_box(choice, probed.task)
    if not text:
        st.info("Type an input to read one of its activations.")
        return
    try:
        probed.task.validate(text)
        position, site = query_picker(probed, decoder.config.sites, text)
        attention = attention_html(choice, text, position, site)
        if attention:
            st.html(attention)
        result = reading(
            choice,
            text,
            position,
            site,
            settings.samples,
            settings.seed,
            settings.metric,
            settings.epsilon,
            settings.schedule,
        )
    except UserError as exc:
        st.error(str(exc))
        return
    st.html(render_result(result, show_colors=settings.show_colors, limit=SHOWN_ROWS, outside=settings.outside))
    patch_panel(probed, text, position, site)
    saved_views(result, settings.show_colors)


main()
