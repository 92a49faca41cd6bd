"""The ``inversionview`` command: a thin layer over the library, one short function per command.

Every mistake a user can make ends in one line on stderr and exit status 2: usage errors from
argparse and ``UserError`` from the library alike. Anything else is a bug and keeps its traceback.
The library is imported inside the commands that use it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from inversionview.errors import UserError, as_flags
from inversionview.options import add_config_options, config_values

STARTED = time.monotonic()
"""When the command started: a training budget (``--minutes``) counts its start-up from here."""

DEVICE_HELP = "where the models run: auto (the GPU when there is one), cpu, cuda or cuda:N"
SCHEDULE_HELP = (
    "'auto'; 'distinct' (without replacement: every sample a different input); "
    "or TEMPERATURE:NOISE pairs, e.g. 1:0,0.5:0,1:0.05"
)
RESUME_HINT = "interrupted; the run resumes from its last checkpoint with the same command"
TEMPERATURE_HELP = "use this one temperature and no noise (with --schedule distinct: its temperature, default 1)"
LOAD_OPTIONS = ("task", "vocab", "bos", "eos", "pad", "allow_pickle", "dtype", "device")
SEQUENCE_OPTIONS = ("tokens", "length", "inputs")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        raise UserError(f"{self.prog}: {message} (see --help)")


def _epsilon(text: str) -> float:
    """An argparse type for ε: a finite number, not negative (checked before any model loads)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def _whole_number(low: int, high: int | None = None):
    """An argparse type for a count or a port: a whole number from ``low`` up to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    return parse


# ---- commands: each parses nothing more and calls the library ----


def _load_options(args: argparse.Namespace) -> dict:
    """The probed-model options of the command line, as ``load_probed`` takes them; a token list
    (``--tokens``, ``--length``, ``--inputs``) makes BOS, EOS and PAD options of the task."""
    options = {name: getattr(args, name) for name in LOAD_OPTIONS}
    task_options = {name: getattr(args, name) for name in SEQUENCE_OPTIONS if getattr(args, name) is not None}
    if task_options:
        task_options |= {name: options.pop(name) for name in ("bos", "eos", "pad") if options[name] is not None}
        options["task_options"] = task_options
    return options


def _corpus_options(args: argparse.Namespace) -> dict:
    """The command line's corpus, as ``ProbedModel.use_corpus`` takes it (none: no corpus)."""
    if args.corpus is None and args.dataset is None:
        return {}
    path = str(args.corpus.resolve()) if args.corpus is not None else None
    return {"path": path, "dataset": args.dataset, "field": args.dataset_field, "max_len": args.max_tokens}


def load_probed_from(args: argparse.Namespace):
    """The probed model that the options of ``probed_options`` name (benchmarks take them too)."""
    from inversionview import bundled
    from inversionview.probed import load_probed

    _set_threads(args.threads)
    probed = load_probed(args.probed or bundled.DEFAULT, **_load_options(args))
    if corpus := _corpus_options(args):
        probed.use_corpus(**corpus)
    return probed


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


PROGRESS_AFTER_SECONDS = 2.0
"""Work that lasts longer than this shows a bar with its estimate on a terminal, updated twice a second."""
LOGGED_PROGRESS_SECONDS = 10.0
"""When stderr is a file (a log), the bar's first line and each next one come this far apart."""


@contextmanager
def _progress_bar(description: str, unit: str) -> Iterator:
    """A progress callback drawing a bar with its time estimate on stderr, once the work has taken a
    few seconds (``PROGRESS_AFTER_SECONDS``, or ``LOGGED_PROGRESS_SECONDS`` when stderr is no terminal)."""
    from tqdm import tqdm

    delay, interval = (PROGRESS_AFTER_SECONDS, 0.5) if sys.stderr.isatty() else (LOGGED_PROGRESS_SECONDS,) * 2
    options = {"mininterval": interval, "delay": delay, "leave": False, "file": sys.stderr}
    with tqdm(desc=description, unit=unit, **options) as bar:

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield update


def _emit(args: argparse.Namespace, record: dict, lines: Callable[[], list[str]]) -> None:
    """A command's result: one JSON object with --json, else its lines (``views/terminal.py``)."""
    print(json.dumps(record) if args.json else "\n".join(lines()))


def _report_training() -> None:
    """Training logs each evaluation (and, for a decoder, what its precision means): show them."""
    logging.getLogger("inversionview").setLevel(logging.INFO)


def _say_if_stopped(stop, out: Path) -> None:
    if stop.is_set():
        print(f"stopped early on request; the checkpoint in {out} resumes with the same command")


def _speaks_for_run() -> bool:
    from inversionview.distributed import main_process

    return main_process()


def cmd_train_probed(args: argparse.Namespace) -> None:
    from inversionview.probed.train import recipe_for, train_probed
    from inversionview.storage import output_folder
    from inversionview.training import stop_requests

    _set_threads(args.threads)
    _report_training()
    recipe = recipe_for(args.task_name, seed=args.seed, steps=args.steps)
    output_folder(args.out)
    with stop_requests() as stop:
        probed = train_probed(recipe, args.out, device=args.device, stop=stop)
    if _speaks_for_run():  # under torchrun, rank 0 speaks for the run
        print(f"saved {args.out} (content hash {probed.content_hash[:12]})")
        _say_if_stopped(stop, args.out)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from inversionview.probed.train import evaluate_probed
    from inversionview.views.terminal import evaluation_lines

    probed = load_probed_from(args)
    result = evaluate_probed(probed, n=args.n, seed=args.seed)
    _emit(args, result.to_dict(probed.task), lambda: evaluation_lines(result, probed.task))


def cmd_train_decoder(args: argparse.Namespace) -> None:
    from inversionview.decoder.train import DecoderTrainConfig, read_run_summary, train_decoder
    from inversionview.storage import output_folder
    from inversionview.training import stop_requests
    from inversionview.views.terminal import training_line

    config = DecoderTrainConfig(**config_values(args, DecoderTrainConfig))
    if config.minutes is not None:
        config.check()  # a bad budget is refused before the model loads
    output_folder(args.out)
    probed = load_probed_from(args)
    _report_training()
    with stop_requests() as stop:
        train_decoder(probed, config, args.out, stop=stop, started_at=STARTED)
    if _speaks_for_run():  # under torchrun, rank 0 speaks for the run
        _say_if_stopped(stop, args.out)
        print(training_line(read_run_summary(args.out), args.out))


LONG_READING_SECONDS = 600.0
"""An exact pass estimated over this is refused unless --yes (as a reading is: ``views/reading.py``)."""


def _invert_each(args: argparse.Namespace, sites: list[str], probed=None) -> list:
    """One reading per site, with the invert options of ``args``."""
    from inversionview.decoder.store import load_decoder
    from inversionview.inversion.spec import ReadingSpec
    from inversionview.probed.query import check_query
    from inversionview.views.reading import read_sites

    spec = ReadingSpec(
        **{name: getattr(args, name) for name in ("samples", "seed", "metric", "epsilon", "schedule", "temperature")},
        refine=getattr(args, "refine", 0),
        explain=args.explain,
    )
    probed = probed or load_probed_from(args)
    check_query(probed, args.input, args.position, sites)  # before the decoder loads
    decoder = load_decoder(args.decoder, probed)
    options = {"features_file": args.features, "decoder_name": args.decoder or "bundled", "allow_long": args.yes}
    progress = lambda site: _progress_bar(f"sampling {site}", "sample")  # noqa: E731
    return read_sites(probed, decoder, args.input, args.position, sites, spec, progress_for=progress, **options)


def cmd_invert(args: argparse.Namespace) -> None:
    from rich.console import Console

    from inversionview.views.terminal import render, render_features

    (result,) = _invert_each(args, [args.site])
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        console = Console()
        render(result, console, limit=args.limit, outside=args.outside, show_colors=not args.no_color)
        render_features(result, console)


def cmd_report(args: argparse.Namespace) -> None:
    from inversionview.views.html_render import check_report_path, write_report

    check_report_path(args.output)
    probed = load_probed_from(args)
    results = _invert_each(args, args.site, probed)
    figures = [_scan_figure(probed, args.scan, args.seed)] if args.scan else []
    options = {"show_colors": not args.no_color, "limit": args.limit, "outside": args.outside, "figures": figures}
    write_report(results, args.output, **options)
    print(f"wrote {args.output} ({len(results)} site{'s' * (len(results) > 1)}{', a patching scan' * bool(figures)})")


def _scan_figure(probed, n: int, seed: int) -> tuple[bytes, str]:
    """A patching scan over ``n`` contrast pairs, as a PNG heatmap and its caption."""
    import io

    from inversionview.causal.scan import patch_scan
    from inversionview.views.plots import scan_heatmap

    scan, png = patch_scan(probed, n, seed=seed), io.BytesIO()
    scan_heatmap(scan, png, f"patching scan of {probed.source}")
    return png.getvalue(), f"mean effect of patching each component at each position, over {n} contrast pairs"


def cmd_exact(args: argparse.Namespace) -> None:
    from inversionview.exact.preimage import exact_preimage
    from inversionview.views.terminal import exact_lines

    probed = load_probed_from(args)
    options = {"metric": args.metric, "epsilon": args.epsilon, "limit": args.limit, "seed": args.seed}
    options["max_seconds"] = None if args.yes else LONG_READING_SECONDS
    with _progress_bar("probed model over the input space", "input") as progress:
        result = exact_preimage(
            probed, args.input, args.position, args.site, sample_size=args.space_sample, progress=progress, **options
        )
    _emit(args, result.to_dict(), lambda: exact_lines(result))


def cmd_completeness(args: argparse.Namespace) -> None:
    from inversionview.decoder.schedule import parse_schedule
    from inversionview.decoder.store import load_decoder
    from inversionview.exact.completeness import completeness
    from inversionview.views.plots import check_plot_path, completeness_scatter
    from inversionview.views.terminal import completeness_lines

    if args.plot:
        check_plot_path(args.plot)
    schedule = parse_schedule(args.schedule, args.temperature)
    probed = load_probed_from(args)
    decoder = load_decoder(args.decoder, probed)
    options = {"samples": args.samples, "seed": args.seed, "metric": args.metric, "epsilon": args.epsilon}
    with (
        _progress_bar("probed model over the input space", "input") as exact_progress,
        _progress_bar("decoder samples", "sample") as sampling_progress,
    ):
        query = (args.input, args.position, args.site)
        progress = {"exact_progress": exact_progress, "sampling_progress": sampling_progress}
        result = completeness(probed, decoder, *query, schedule=schedule, **progress, **options)
    if args.plot:
        result.seconds["plot"] = completeness_scatter(probed, decoder, result, args.plot, max_points=args.plot_points)
    _emit(args, result.to_dict(), lambda: completeness_lines(result))


def parse_position(text: str) -> int | str:
    """A position as a user writes it: a whole number, or a name the task gives one."""
    try:
        return int(text)
    except ValueError:
        return text


def _site_at(text: str) -> tuple[str, int | str]:
    """An argparse type for ``SITE@POSITION``: a position as ``invert`` takes it, or a named one."""
    site, at, position = text.rpartition("@")
    if not (at and site and position):
        raise argparse.ArgumentTypeError(f"{text!r}: write SITE@POSITION, e.g. blocks.0.hook_attn_out@-2 or @:")
    return site, parse_position(position)


def cmd_patch(args: argparse.Namespace) -> None:
    from inversionview.causal.metrics import task_metric
    from inversionview.causal.patch import patch, resolved_patches
    from inversionview.views.terminal import patch_lines

    probed = load_probed_from(args)
    if args.source == "auto":
        _patch_contrasts(args, probed)
        return
    if args.input is None:
        raise UserError("give --input (or --source auto to draw inputs and their contrasts)")
    resolved_patches(probed, args.input, args.source, args.patch)  # a mismatched source is refused first
    metric = task_metric(probed, args.input, args.source, target=args.target, answer=args.answer, alt=args.alt)
    result = patch(probed, args.input, args.source, args.patch, metric)
    _emit(args, result.to_dict(), lambda: patch_lines(result))


def _patch_contrasts(args: argparse.Namespace, probed) -> None:
    from inversionview.causal.patch import contrast_pairs, patch_pairs

    summary = patch_pairs(probed, contrast_pairs(probed, args.n, seed=args.seed), args.patch)
    if args.json:
        print(json.dumps({**summary.to_dict(), "patches": [f"{s}@{p}" for s, p in args.patch]}))
        return
    effect = "none (no logit difference)" if summary.mean_effect is None else f"{summary.mean_effect:.3f}"
    print(f"{summary.n} held-out inputs and their contrasts: mean effect {effect}; flipped {summary.flipped:.1%}")


def cmd_patch_scan(args: argparse.Namespace) -> None:
    from inversionview.causal.scan import cumulative_scan, patch_scan
    from inversionview.views.plots import check_plot_path, scan_heatmap
    from inversionview.views.terminal import scan_lines

    if args.plot:
        check_plot_path(args.plot)
    probed = load_probed_from(args)
    if args.cumulative:
        scan = cumulative_scan(probed, args.n, args.cumulative, seed=args.seed)
    else:
        scan = patch_scan(probed, args.n, components=args.components, seed=args.seed)
    if args.plot:
        scan_heatmap(scan, args.plot, f"patching scan of {args.probed or 'counting'}")
    _emit(args, scan.to_dict(), lambda: scan_lines(scan))


def cmd_head_share(args: argparse.Namespace) -> None:
    from inversionview.causal.heads import head_share
    from inversionview.views.plots import check_plot_path, head_share_figure
    from inversionview.views.terminal import head_share_lines

    if args.plot:
        check_plot_path(args.plot)
    probed = load_probed_from(args)
    result = head_share(probed, args.n, threshold=args.threshold, seed=args.seed)
    if args.plot:
        head_share_figure(result, probed.n_layers, args.plot, f"head share of {args.probed or 'counting'}")
    print(json.dumps(result.to_dict()) if args.json else "\n".join(head_share_lines(result)))


def cmd_explain(args: argparse.Namespace) -> None:
    from inversionview.interpret.llm import ask, reading_prompt

    args.explain = True
    results = _invert_each(args, args.site)
    prompt = "\n\n".join(reading_prompt(result) for result in results)
    if args.print_prompt:
        print(prompt)
        return
    if not (args.llm_url and args.llm_model):
        raise UserError("give --llm-url and --llm-model (or --print-prompt to see the prompt, sending nothing)")
    response = ask(args.llm_url, args.llm_model, prompt)
    if args.json:
        print(json.dumps({"prompt": prompt, "response": response, "features": [r.features for r in results]}))
    else:
        print(response)


def cmd_explain_map(args: argparse.Namespace) -> None:
    from inversionview.decoder.store import load_decoder
    from inversionview.interpret.explain_map import explain_map
    from inversionview.views.plots import check_plot_path, explain_map_figure

    if args.plot:
        check_plot_path(args.plot)
    probed = load_probed_from(args)
    decoder = load_decoder(args.decoder, probed)
    with _progress_bar("sites × positions", "cell") as progress:
        table = explain_map(probed, decoder, args.n, samples=args.samples, seed=args.seed, progress=progress)
    if args.plot:
        explain_map_figure(table, args.plot, f"explain-map of {args.probed or 'counting'}")
    if args.json:
        print(json.dumps(table.to_dict()))
        return
    print(f"features kept (share of {table.n} held-out queries judged encoded, ≥ 0.5 shown)")
    for site, row in zip(table.sites, table.encoded):
        cells = [", ".join(f"{f} {v:.2f}" for f, v in cell.items() if v >= 0.5) or "-" for cell in row]
        print(f"{site:32s} " + " | ".join(f"{name}: {cell}" for name, cell in zip(table.positions, cells)))


def cmd_tokens(args: argparse.Namespace) -> None:
    from inversionview.probed.query import position_table
    from inversionview.views.terminal import position_lines

    table = position_table(load_probed_from(args), args.input)
    print(json.dumps({"input": args.input, "tokens": table}) if args.json else "\n".join(position_lines(table)))


def cmd_fortunes(args: argparse.Namespace) -> None:
    from inversionview.storage import output_file
    from inversionview.tasks.text import fortunes

    output_file(args.out)
    quotes = fortunes(args.source)
    args.out.write_text("\n".join(quotes) + "\n", encoding="utf-8")
    print(f"wrote {len(quotes)} quotations to {args.out}, one a line")


def cmd_view(args: argparse.Namespace) -> None:
    from inversionview import bundled
    from inversionview.views.server import ViewerSettings, check_address, serve

    if args.models_dir is not None and not args.models_dir.is_dir():
        raise UserError(f"--models-dir {args.models_dir} is not a directory")
    check_address(args.host, args.port, allow_remote=args.allow_remote)
    corpus = _corpus_options(args)
    named = args.probed is not None or args.decoder is not None or bool(corpus)
    if named:
        load_probed_from(args)  # a bad --probed fails here, in one line, not inside the page
    settings = ViewerSettings(
        probed=(args.probed or bundled.DEFAULT) if named else None,
        decoder=args.decoder,
        load_options=_load_options(args),
        models_dir=str(args.models_dir.resolve()) if args.models_dir is not None else None,
        corpus=corpus,
    )
    print(f"InversionView on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    serve(settings, host=args.host, port=args.port, threads=args.threads)


def cmd_demo(args: argparse.Namespace) -> None:
    from rich.console import Console

    from inversionview import bundled
    from inversionview.views.demo import demo

    _set_threads(args.threads)
    options = {"samples": args.samples, "seed": args.seed, "limit": args.limit, **_load_options(args)}
    demo(args.probed or bundled.DEFAULT, Console(), **options)


# ---- the parser: one function per command ----


def probed_options() -> argparse.ArgumentParser:
    """Options every command that loads a probed model takes."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("probed model")
    group.add_argument("--probed", help="bundled model name (default: counting) or a local directory")
    group.add_argument("--task", help="task of a model that has no inversionview.json (e.g. counting)")
    group.add_argument("--vocab", help="character vocabulary, id = index, e.g. 'abc…|:BEP'")
    group.add_argument("--tokens", help="sequences task: the token list, id = index, e.g. BOS,a,b,c,pad")
    group.add_argument("--length", help="sequences task: tokens an input holds, 5 or 2-5 (default 5)")
    group.add_argument("--inputs", help="sequences task: a Python file defining sample(rng) -> list[str]")
    group.add_argument("--bos", help="vocabulary character (or token of --tokens) that stands for BOS")
    group.add_argument("--eos", help="vocabulary character (or token of --tokens) that stands for EOS")
    group.add_argument("--pad", help="vocabulary character (or token of --tokens) that stands for PAD")
    group.add_argument("--allow-pickle", action="store_true", help="permit unpickling pytorch_model.bin")
    group.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="run the probed model in this dtype")
    group.add_argument("--device", default="auto", help=DEVICE_HELP)
    group.add_argument("--threads", type=_whole_number(1), help="CPU threads for torch (default: torch's choice)")
    data = group.add_mutually_exclusive_group()
    data.add_argument("--corpus", type=Path, help="free-text models: inputs from this file (one a line, or JSONL)")
    data.add_argument("--dataset", help="free-text models: inputs from this Hugging Face dataset, NAME or NAME:SPLIT")
    group.add_argument("--dataset-field", default="text", help="the dataset's text column")
    group.add_argument(
        "--max-tokens",
        type=_whole_number(3),
        help="free-text models: the longest input in tokens, BOS and EOS included (default 64, or the model's context)",
    )
    return parent


def _query_options(parser: argparse.ArgumentParser, many_sites: bool = False) -> None:
    parser.add_argument("--input", required=True, help="the input whose activation to read")
    parser.add_argument(
        "--position",
        type=parse_position,
        required=True,
        help="query position: BOS = 0, negative from the end, or a name the task gives one (`tokens` lists them)",
    )
    if many_sites:
        parser.add_argument("--site", required=True, action="append", help="activation site; repeat for several")
    else:
        parser.add_argument("--site", required=True, help="activation site, e.g. blocks.0.hook_resid_post")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--metric",
        choices=["euclidean", "cosine", "whitened"],
        help="default: the model's (euclidean); whitened: euclidean after whitening by the site's covariance",
    )
    parser.add_argument("--epsilon", type=_epsilon, help="default: the model's (0.1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _sampling_options(parser: argparse.ArgumentParser, samples: int) -> None:
    parser.add_argument("--decoder", help="decoder directory (default: the bundled one)")
    parser.add_argument("--samples", type=_whole_number(1), default=samples)
    parser.add_argument("--schedule", default="auto", help=SCHEDULE_HELP)
    parser.add_argument("--temperature", type=float, help=TEMPERATURE_HELP)


def _view_options(parser: argparse.ArgumentParser, limit: int) -> None:
    parser.add_argument("--limit", type=_whole_number(1), default=limit, help="distinct samples to show")
    parser.add_argument(
        "--outside",
        type=_whole_number(0),
        help="of those, how many of the nearest outside ε to show (default: a quarter of --limit)",
    )
    parser.add_argument("--no-color", action="store_true", help="plain tokens, no probability colours")
    parser.add_argument("--yes", action="store_true", help="go ahead with a reading estimated to take over 10 minutes")
    parser.add_argument(
        "--explain", action="store_true", help="which features of the input the preimage keeps, against chance"
    )
    parser.add_argument(
        "--features",
        type=Path,
        help="a Python file of functions name(text, position) -> value to check too (runs it; implies --explain)",
    )


def _add_train_probed(commands) -> None:
    p = commands.add_parser("train-probed", help="train a probed model from scratch (resumes from OUT)")
    p.add_argument("task_name", metavar="TASK", help="task to train on, e.g. counting")
    p.add_argument("--out", type=Path, required=True, help="directory for checkpoints and the final model")
    p.add_argument("--steps", type=int, help="training steps (default: the task's recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_whole_number(1), help="CPU threads for torch")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(run=cmd_train_probed, interrupted=RESUME_HINT)


def _add_evaluate(commands, probed) -> None:
    p = commands.add_parser("evaluate", parents=[probed], help="score a probed model on held-out inputs")
    p.add_argument(
        "--n", type=_whole_number(1), help="held-out inputs to score (default: all when they can be listed, else 2000)"
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_evaluate)


TRAINING_OPTIONS = [
    "batch_size", "lr", "d_model", "n_layers", "n_condition_layers", "occurrences", "tied_embeddings",
    "token_match", "positions", "sites", "init_from", "verified_queries", "verified_samples", "eval_every",
    "site_weight_floor", "query_weight", "seed",
]  # fmt: skip
"""The fields of ``DecoderTrainConfig`` that ``train-decoder`` takes as flags (``options.py``)."""


def _add_train_decoder(commands, probed) -> None:
    from inversionview.decoder.config import DecoderTrainConfig

    p = commands.add_parser("train-decoder", parents=[probed], help="train a decoder (resumes from OUT)")
    p.add_argument("--out", type=Path, required=True, help="directory for checkpoints and the decoder")
    add_config_options(p.add_mutually_exclusive_group(), DecoderTrainConfig, ["steps", "minutes"])
    add_config_options(
        p,
        DecoderTrainConfig,
        TRAINING_OPTIONS,
        flags={"n_condition_layers": "--condition-layers"},
        types={"sites": lambda text: [name.strip() for name in text.split(",") if name.strip()]},
    )
    p.set_defaults(run=cmd_train_decoder, interrupted=RESUME_HINT)


def _add_readings(commands, probed) -> None:
    p = commands.add_parser("invert", parents=[probed], help="sample and verify the ε-preimage of one activation")
    _query_options(p)
    _sampling_options(p, samples=1000)
    p.add_argument(
        "--refine",
        type=_whole_number(0),
        default=0,
        metavar="R",
        help="spend up to R probed-model evaluations on each distinct sample outside ε to turn it into a member (0)",
    )
    _view_options(p, limit=40)
    p.set_defaults(run=cmd_invert)

    help_text = "write readings at one or more sites as a self-contained HTML file"
    p = commands.add_parser("report", parents=[probed], help=help_text)
    _query_options(p, many_sites=True)
    _sampling_options(p, samples=1000)
    _view_options(p, limit=60)
    p.add_argument("--scan", type=_whole_number(1), help="also include a patching scan over this many contrast pairs")
    p.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    p.set_defaults(run=cmd_report)


def _add_patch(commands, probed) -> None:
    help_text = "activation patching: the input's run with activations taken from a source input's"
    p = commands.add_parser("patch", parents=[probed], help=help_text)
    p.add_argument("--input", help="the input whose run is patched")
    p.add_argument(
        "--source",
        required=True,
        help="the input whose activations are patched in (same length), or 'auto': --n held-out inputs, "
        "each with a contrast from the task's own generator",
    )
    p.add_argument("--n", type=_whole_number(1), default=100, help="with --source auto: how many pairs (100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--patch",
        required=True,
        action="append",
        type=_site_at,
        help="SITE@POSITION to patch (positions as in invert: BOS = 0, negative from the end); repeat for several",
    )
    p.add_argument("--target", help="addition: the answer digit measured, A1-A4 (default: the first that differs)")
    p.add_argument("--answer", help="free text: the token whose logit counts for (with --alt)")
    p.add_argument("--alt", help="free text: the token whose logit counts against")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_patch)


def _add_patch_scan(commands, probed) -> None:
    help_text = "patch one (position, component) cell at a time over --n contrast pairs: the grid of mean effects"
    p = commands.add_parser("patch-scan", parents=[probed], help=help_text)
    p.add_argument("--n", type=_whole_number(1), default=200, help="contrast pairs (200)")
    p.add_argument(
        "--components",
        nargs="+",
        help="sites to scan (default: per layer hook_resid_pre, each head, hook_attn_out, hook_mlp_out)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--cumulative",
        choices=("forward", "backward"),
        help="instead: heads patched at every position, a growing set in layer order (or its reverse)",
    )
    p.add_argument("--plot", type=Path, help="write the heatmap to this PNG")
    p.set_defaults(run=cmd_patch_scan)


def _add_head_share(commands, probed) -> None:
    help_text = "how often each head's output makes up the residual stream at the answer position, beside patching"
    p = commands.add_parser("head-share", parents=[probed], help=help_text)
    p.add_argument("--n", type=_whole_number(1), default=200, help="held-out prompts (200)")
    p.add_argument("--threshold", type=float, default=0.3, help="share of its layer a head must pass (0.3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", type=Path, help="write the layer × head grids to this PNG")
    p.set_defaults(run=cmd_head_share)


def _add_explain(commands, probed) -> None:
    help_text = "put readings into words with a language model (any OpenAI-compatible endpoint)"
    p = commands.add_parser("explain", parents=[probed], help=help_text)
    _query_options(p, many_sites=True)
    _sampling_options(p, samples=500)
    _view_options(p, limit=40)
    p.add_argument("--llm-url", help="the endpoint, e.g. http://127.0.0.1:8080/v1 (key: $INVERSIONVIEW_LLM_KEY)")
    p.add_argument("--llm-model", help="the model name the endpoint serves")
    p.add_argument("--print-prompt", action="store_true", help="print the prompt and send nothing")
    p.set_defaults(run=cmd_explain)


def _add_explain_map(commands, probed) -> None:
    help_text = "at every site and named position, the features that held-out queries' readings keep"
    p = commands.add_parser("explain-map", parents=[probed], help=help_text)
    p.add_argument("--decoder", help="decoder directory (default: the bundled one)")
    p.add_argument("--n", type=_whole_number(1), default=10, help="held-out queries per site and position (10)")
    p.add_argument("--samples", type=_whole_number(1), default=200, help="samples a reading (200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", type=Path, help="write the map to this PNG")
    p.set_defaults(run=cmd_explain_map)


def _add_tokens(commands, probed) -> None:
    help_text = "list an input's positions and tokens as a reading sees them (BOS = 0, then from the end)"
    p = commands.add_parser("tokens", parents=[probed], help=help_text)
    p.add_argument("--input", required=True, help="the input to list")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_tokens)


def _add_fortunes(commands) -> None:
    help_text = "write the quotations of a fortune database (apt install fortunes) as a corpus, one a line"
    p = commands.add_parser("fortunes", help=help_text)
    p.add_argument("--out", type=Path, required=True, help="the corpus file to write")
    p.add_argument(
        "--from", dest="source", type=Path, default=Path("/usr/share/games/fortunes"), help="the fortune folder"
    )
    p.set_defaults(run=cmd_fortunes)


def _add_exact(commands, probed) -> None:
    p = commands.add_parser("exact", parents=[probed], help="the exact ε-preimage, by brute force over the inputs")
    _query_options(p)
    p.add_argument("--limit", type=_whole_number(0), default=20, help="members to list, nearest first")
    p.add_argument(
        "--space-sample", type=_whole_number(1), default=200_000, help="inputs to sample when the space is too large"
    )
    p.add_argument("--yes", action="store_true", help="go ahead with a pass estimated to take over 10 minutes")
    p.set_defaults(run=cmd_exact)

    p = commands.add_parser("completeness", parents=[probed], help="decoder precision and recall against the exact")
    _query_options(p)
    _sampling_options(p, samples=10_000)
    p.add_argument("--plot", type=Path, help="write the completeness scatter to this PNG")
    p.add_argument(
        "--plot-points", type=_whole_number(0), default=100_000, help="inputs drawn in the scatter (members always)"
    )
    p.set_defaults(run=cmd_completeness)


def _add_view_and_demo(commands, probed) -> None:
    p = commands.add_parser("view", parents=[probed], help="the web page, on 127.0.0.1 by default")
    p.add_argument("--decoder", help="decoder directory for --probed (default: the bundled one)")
    p.add_argument("--port", type=_whole_number(1, 65535), default=8501)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--allow-remote", action="store_true", help="permit a --host other machines can reach")
    p.add_argument("--models-dir", type=Path, help="folder whose sub-folders hold probed/ and decoder/")
    p.set_defaults(run=cmd_view)

    help_text = "read a bundled model (counting, addition or ioi) at three sites"
    p = commands.add_parser("demo", parents=[probed], help=help_text)
    p.add_argument("--samples", type=_whole_number(1), default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=_whole_number(1), default=12, help="distinct samples to print per site")
    p.set_defaults(run=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="inversionview", description="Read the information in a model's activations.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    probed = probed_options()
    _add_train_probed(commands)
    _add_evaluate(commands, probed)
    _add_train_decoder(commands, probed)
    _add_readings(commands, probed)
    _add_tokens(commands, probed)
    _add_fortunes(commands)
    _add_patch(commands, probed)
    _add_patch_scan(commands, probed)
    _add_head_share(commands, probed)
    _add_explain(commands, probed)
    _add_explain_map(commands, probed)
    _add_exact(commands, probed)
    _add_view_and_demo(commands, probed)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (tests call this directly)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = None
    try:
        args = build_parser().parse_args(argv)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        args.run(args)
    except UserError as exc:
        print(f"error: {as_flags(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", "interrupted"), file=sys.stderr)
        return 130
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
