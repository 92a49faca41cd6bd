"""What each command does: one short function per command, taking the parsed arguments (``cli.py``)
and calling the library. Each prints its result (one JSON object with ``--json``, else the lines of
``views/terminal.py``). The library is imported inside the command that uses it, so that ``--help``
and a bad option answer before torch loads.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from inversionview.errors import UserError
from inversionview.inversion.spec import ReadingSpec
from inversionview.options import config_values
from inversionview.probed.source import ProbedSource

STARTED = time.monotonic()
"""When the command started: a training budget (``--minutes``) counts its start-up from here."""


def source_of(args: argparse.Namespace) -> ProbedSource:
    """The probed model the command line names (``probed_options``)."""
    return ProbedSource(**config_values(args, ProbedSource))


def load_probed_from(args: argparse.Namespace):
    """The probed model that the options of ``probed_options`` name (benchmarks take them too)."""
    return source_of(args).load()


def _spec_of(args: argparse.Namespace, **fixed) -> ReadingSpec:
    return ReadingSpec(**{**config_values(args, ReadingSpec), **fixed})


def _emit(args: argparse.Namespace, record: dict, lines: Callable[[], list[str]]) -> None:
    """A command's result: one JSON object with --json, else its lines (``views/terminal.py``)."""
    print(json.dumps(record) if args.json else "\n".join(lines()))


def check_paths(args: argparse.Namespace) -> None:
    """The files and folders ``args`` names, checked before any command imports torch or loads a
    model (``paths.py`` and ``ProbedSource.check``, torch-free), so that a mistake there costs nothing."""
    from inversionview.paths import features_file, input_folder, plot_file

    if getattr(args, "decoder", None):
        input_folder(args.decoder, "decoder directory")
    if getattr(args, "features_file", None):
        features_file(args.features_file)
    if getattr(args, "plot", None):
        plot_file(args.plot)
    if hasattr(args, "probed"):
        source_of(args).check()


def _train(run: Callable, out: Path) -> None:
    """Run ``run(stop)`` with the evaluations logged; say so when it stopped early on request."""
    from inversionview.distributed import main_process
    from inversionview.training import stop_requests

    logging.getLogger("inversionview").setLevel(logging.INFO)  # each evaluation, as training logs it
    with stop_requests() as stop:
        run(stop)
    if stop.is_set() and main_process():  # under torchrun, rank 0 speaks for the run
        print(f"stopped early on request; the checkpoint in {out} resumes with the same command")


# ---- commands: each parses nothing more and calls the library ----


def cmd_train_probed(args: argparse.Namespace) -> None:
    from inversionview.distributed import main_process
    from inversionview.probed.source import set_threads
    from inversionview.probed.train import recipe_for, train_probed

    set_threads(args.threads)
    recipe = recipe_for(args.task_name, seed=args.seed, steps=args.steps)
    trained = []
    _train(lambda stop: trained.append(train_probed(recipe, args.out, device=args.device, stop=stop)), args.out)
    if main_process():
        print(f"saved {args.out} (content hash {trained[0].content_hash[:12]})")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from inversionview.probed.train import evaluate_probed
    from inversionview.views.terminal import evaluation_lines

    probed = load_probed_from(args)
    result = evaluate_probed(probed, n=args.n, seed=args.seed)
    _emit(args, result.to_dict(probed.task), lambda: evaluation_lines(result, probed.task))


def cmd_train_decoder(args: argparse.Namespace) -> None:
    from inversionview.decoder.train import DecoderTrainConfig, read_run_summary, train_decoder
    from inversionview.distributed import main_process
    from inversionview.views.terminal import training_line

    config = DecoderTrainConfig(**config_values(args, DecoderTrainConfig))
    if config.minutes is not None:
        config.check()  # a bad budget is refused before the model loads
    probed = load_probed_from(args)
    _train(lambda stop: train_decoder(probed, config, args.out, stop=stop, started_at=STARTED), args.out)
    if main_process():
        print(training_line(read_run_summary(args.out), args.out))


def _read(args: argparse.Namespace, sites: list[str], spec: ReadingSpec, probed=None) -> list:
    """One reading per site, as ``args`` asks for it (``views/reading.py``)."""
    from inversionview.decoder.store import load_decoder
    from inversionview.probed.query import check_query
    from inversionview.views.progress import progress_bar
    from inversionview.views.reading import read_sites

    probed = probed or load_probed_from(args)
    check_query(probed, args.input, args.position, sites)  # before the decoder loads
    decoder = load_decoder(args.decoder, probed)
    options = {"features_file": args.features_file, "decoder_name": args.decoder or "bundled", "allow_long": args.yes}
    progress = lambda site: progress_bar(f"sampling {site}", "sample")  # noqa: E731
    return read_sites(probed, decoder, args.input, args.position, sites, spec, progress_for=progress, **options)


def _view_of(args: argparse.Namespace) -> dict:
    return {"limit": args.limit, "outside": args.outside, "show_colors": not args.no_color}


def cmd_invert(args: argparse.Namespace) -> None:
    from rich.console import Console

    from inversionview.views.terminal import render, render_features

    (result,) = _read(args, [args.site], _spec_of(args))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        render(result, console := Console(), **_view_of(args))
        render_features(result, console)


def cmd_report(args: argparse.Namespace) -> None:
    from inversionview.views.html_render import check_report_path, write_report
    from inversionview.views.plots import scan_figure

    check_report_path(args.output)
    spec = _spec_of(args)
    probed = load_probed_from(args)
    results = _read(args, args.site, spec, probed)
    figures = [scan_figure(probed, args.scan, args.seed)] if args.scan else []
    write_report(results, args.output, figures=figures, **_view_of(args))
    print(f"wrote {args.output} ({len(results)} site{'s' * (len(results) > 1)}{', a patching scan' * bool(figures)})")


def cmd_exact(args: argparse.Namespace) -> None:
    from inversionview.exact.preimage import exact_preimage
    from inversionview.views.progress import progress_bar
    from inversionview.views.reading import LONG_READING_SECONDS
    from inversionview.views.terminal import exact_lines

    spec = _spec_of(args)
    probed = load_probed_from(args)
    options = {"metric": spec.metric, "epsilon": spec.epsilon, "limit": args.limit, "seed": spec.seed}
    options |= {"max_seconds": None if args.yes else LONG_READING_SECONDS, "sample_size": args.sample_size}
    with progress_bar("probed model over the input space", "input") as progress:
        result = exact_preimage(probed, args.input, args.position, args.site, progress=progress, **options)
    _emit(args, result.to_dict(), lambda: exact_lines(result))


def cmd_completeness(args: argparse.Namespace) -> None:
    from inversionview.decoder.store import load_decoder
    from inversionview.exact.completeness import completeness
    from inversionview.views.plots import completeness_scatter
    from inversionview.views.progress import progress_bar
    from inversionview.views.terminal import completeness_lines

    spec = _spec_of(args)
    probed = load_probed_from(args)
    decoder = load_decoder(args.decoder, probed)
    options = {"samples": spec.samples, "seed": spec.seed, "metric": spec.metric, "epsilon": spec.epsilon}
    with (
        progress_bar("probed model over the input space", "input") as exact_progress,
        progress_bar("decoder samples", "sample") as sampling_progress,
    ):
        progress = {"exact_progress": exact_progress, "sampling_progress": sampling_progress}
        query = (args.input, args.position, args.site)
        result = completeness(probed, decoder, *query, schedule=spec.parsed_schedule(), **progress, **options)
    if args.plot:
        result.seconds["plot"] = completeness_scatter(probed, decoder, result, args.plot, max_points=args.max_points)
    _emit(args, result.to_dict(), lambda: completeness_lines(result))


def cmd_patch(args: argparse.Namespace) -> None:
    from inversionview.causal.metrics import task_metric
    from inversionview.causal.patch import contrast_pairs, patch, patch_pairs, resolved_patches
    from inversionview.views.terminal import contrast_lines, patch_lines

    probed = load_probed_from(args)
    if args.source == "auto":
        summary = patch_pairs(probed, contrast_pairs(probed, args.n, seed=args.seed), args.patches)
        record = {**summary.to_dict(), "patches": [f"{s}@{p}" for s, p in args.patches]}
        _emit(args, record, lambda: contrast_lines(summary))
        return
    if args.input is None:
        raise UserError("give --input (or --source auto to draw inputs and their contrasts)")
    resolved_patches(probed, args.input, args.source, args.patches)  # a mismatched source is refused first
    metric = task_metric(probed, args.input, args.source, target=args.target, answer=args.answer, alt=args.alt)
    result = patch(probed, args.input, args.source, args.patches, metric)
    _emit(args, result.to_dict(), lambda: patch_lines(result))


def cmd_patch_scan(args: argparse.Namespace) -> None:
    from inversionview.causal.scan import cumulative_scan, patch_scan
    from inversionview.views.plots import scan_heatmap
    from inversionview.views.terminal import scan_lines

    probed = load_probed_from(args)
    if args.cumulative:
        scan = cumulative_scan(probed, args.n, args.cumulative, seed=args.seed)
    else:
        scan = patch_scan(probed, args.n, components=args.components, seed=args.seed)
    if args.plot:
        scan_heatmap(scan, args.plot, f"patching scan of {source_of(args).name}")
    _emit(args, scan.to_dict(), lambda: scan_lines(scan))


def cmd_head_share(args: argparse.Namespace) -> None:
    from inversionview.causal.heads import head_share
    from inversionview.views.plots import head_share_figure
    from inversionview.views.terminal import head_share_lines

    probed = load_probed_from(args)
    result = head_share(probed, args.n, threshold=args.threshold, seed=args.seed)
    if args.plot:
        head_share_figure(result, probed.n_layers, args.plot, f"head share of {source_of(args).name}")
    _emit(args, result.to_dict(), lambda: head_share_lines(result))


def cmd_explain(args: argparse.Namespace) -> None:
    from inversionview.interpret.llm import ask, reading_prompt

    if not args.print_prompt and not (args.llm_url and args.llm_model):
        raise UserError("give --llm-url and --llm-model (or --print-prompt to see the prompt, sending nothing)")
    results = _read(args, args.site, _spec_of(args, explain=True))
    prompt = "\n\n".join(reading_prompt(result) for result in results)
    if args.print_prompt:
        print(prompt)
        return
    response = ask(args.llm_url, args.llm_model, prompt)
    record = {"prompt": prompt, "response": response, "features": [r.features for r in results]}
    _emit(args, record, lambda: [response])


def cmd_explain_map(args: argparse.Namespace) -> None:
    from inversionview.decoder.store import load_decoder
    from inversionview.interpret.explain_map import explain_map
    from inversionview.views.plots import explain_map_figure
    from inversionview.views.progress import progress_bar
    from inversionview.views.terminal import explain_map_lines

    probed = load_probed_from(args)
    decoder = load_decoder(args.decoder, probed)
    with progress_bar("sites × positions", "cell") as progress:
        table = explain_map(probed, decoder, args.n, samples=args.samples, seed=args.seed, progress=progress)
    if args.plot:
        explain_map_figure(table, args.plot, f"explain-map of {source_of(args).name}")
    _emit(args, table.to_dict(), lambda: explain_map_lines(table))


def cmd_tokens(args: argparse.Namespace) -> None:
    from inversionview.probed.query import position_table
    from inversionview.views.terminal import position_lines

    table = position_table(load_probed_from(args), args.input)
    _emit(args, {"input": args.input, "tokens": table}, lambda: position_lines(table))


def cmd_fortunes(args: argparse.Namespace) -> None:
    from inversionview.tasks.text import fortunes

    quotes = fortunes(args.source)
    args.out.write_text("\n".join(quotes) + "\n", encoding="utf-8")
    print(f"wrote {len(quotes)} quotations to {args.out}, one a line")


def cmd_view(args: argparse.Namespace) -> None:
    from inversionview.views.server import ViewerSettings, check_address, serve

    source = source_of(args)
    settings = ViewerSettings.of(source, args.decoder, args.models_dir)
    check_address(args.host, args.port, allow_remote=args.allow_remote)
    if settings.probed is not None:
        source.load()  # a bad --probed fails here, in one line, not inside the page
    print(f"InversionView on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    serve(settings, host=args.host, port=args.port, threads=args.threads)


def cmd_demo(args: argparse.Namespace) -> None:
    from rich.console import Console

    from inversionview.probed.source import set_threads
    from inversionview.views.demo import demo

    source = source_of(args)
    set_threads(source.threads)
    options = {"samples": args.samples, "seed": args.seed, "limit": args.limit, **source.load_options()}
    demo(source.name, Console(), **options)
