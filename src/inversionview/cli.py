"""The ``inversionview`` command line: its flags, parsed and handed to the command that runs
(``commands.py``, one short function per command over the library).

Flags that set a config (the probed model's ``ProbedSource``, a reading's ``ReadingSpec``, a
decoder's ``DecoderTrainConfig``) are written from its documented fields, and a command's own
flags from the documented parameters of the library function it calls (``options.py``). Every
mistake a user can make ends in one line on stderr and exit status 2: usage errors from argparse and
``UserError`` from the library alike, whose `parameter` names are shown as flags. Anything else is a
bug and keeps its traceback. Nothing here imports torch, so ``--help`` and a bad option answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from inversionview import commands
from inversionview.errors import UserError, as_flags
from inversionview.inversion.spec import ReadingSpec
from inversionview.options import (
    Parser,
    add_config_options,
    epsilon,
    field_docs,
    file_to_write,
    folder_to_write,
    position,
    site_at,
    whole_number,
)
from inversionview.probed.metric import METRICS
from inversionview.probed.source import ProbedSource

RESUME_HINT = "interrupted; the run resumes from its last checkpoint with the same command"
PROBED, CAUSAL, VIEWS = "inversionview.probed", "inversionview.causal", "inversionview.views"
"""Where the library functions live whose documented parameters some commands take as flags."""
SAMPLING = ["samples", "seed", "metric", "epsilon", "schedule", "temperature"]
"""The ``ReadingSpec`` fields of a reading without refinement or verdicts."""
COUNT, PORT = {"n": whole_number(1), "samples": whole_number(1)}, {"port": whole_number(1, 65535)}
READING_TYPES = {"samples": whole_number(1), "refine": whole_number(0), "epsilon": epsilon, "metric": METRICS}
"""Reading flags checked as they are parsed, before torch loads."""


# ---- the parser: one function per command ----


def probed_options() -> argparse.ArgumentParser:
    """Options every command that loads a probed model takes: the fields of ``ProbedSource``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("probed model")
    add_config_options(group, ProbedSource, types={"threads": whole_number(1), "max_tokens": whole_number(3)})
    return parent


def _query_options(parser: argparse.ArgumentParser, many_sites: bool = False) -> None:
    parser.add_argument("--input", required=True, help="the input whose activation to read")
    where = "query position: BOS = 0, negative from the end, or a name the task gives one (`tokens` lists them)"
    parser.add_argument("--position", type=position, required=True, help=where)
    site_help = "activation site" + ("; repeat for several" if many_sites else ", e.g. blocks.0.hook_resid_post")
    parser.add_argument("--site", required=True, action="append" if many_sites else "store", help=site_help)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _reading_options(parser: argparse.ArgumentParser, names: list[str] | None, samples: int = 1000) -> None:
    """A reading's query, its ``ReadingSpec`` fields in ``names`` (None: all), and its decoder."""
    _query_options(parser, many_sites=parser.prog.split()[-1] in ("report", "explain"))
    add_config_options(parser, ReadingSpec, names, types=READING_TYPES, defaults={"samples": samples})
    if names is None or "samples" in names:
        parser.add_argument("--decoder", help="decoder directory (default: the bundled one)")


def _view_options(parser: argparse.ArgumentParser, limit: int) -> None:
    parser.add_argument("--limit", type=whole_number(1), default=limit, help=f"distinct samples to show ({limit})")
    outside = "of those, how many of the nearest outside ε to show (default: a quarter of --limit)"
    parser.add_argument("--outside", type=whole_number(0), help=outside)
    parser.add_argument("--no-color", action="store_true", help="plain tokens, no probability colours")
    parser.add_argument("--yes", action="store_true", help="go ahead with a reading estimated to take over 10 minutes")
    features = "a Python file of functions name(text, position) -> value to check too (runs it; implies --explain)"
    parser.add_argument("--features", dest="features_file", type=Path, help=features)


def _json_and_plot(parser: argparse.ArgumentParser, plot: str | None = None) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    if plot:
        parser.add_argument("--plot", type=Path, help=f"write {plot} to this PNG")


def _add_training(sub, probed) -> None:
    from inversionview.decoder.config import DecoderTrainConfig

    p = sub.add_parser("train-probed", help="train a probed model from scratch (resumes from OUT)")
    p.add_argument("task_name", metavar="TASK", help="task to train on, e.g. counting")
    p.add_argument("--out", type=folder_to_write, required=True, help="directory for checkpoints and the final model")
    p.add_argument("--steps", type=int, help="training steps (default: the task's recipe)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the inputs (0)")
    add_config_options(p, ProbedSource, ["threads", "device"], types={"threads": whole_number(1)})
    p.set_defaults(run=commands.cmd_train_probed, interrupted=RESUME_HINT)

    p = sub.add_parser("train-decoder", parents=[probed], help="train a decoder (resumes from OUT)")
    p.add_argument("--out", type=folder_to_write, required=True, help="directory for checkpoints and the decoder")
    add_config_options(p.add_mutually_exclusive_group(), DecoderTrainConfig, ["steps", "minutes"])
    documented = [name for name in field_docs(DecoderTrainConfig) if name not in ("steps", "minutes")]
    types = {"sites": lambda text: text.replace(" ", "").split(",")}
    add_config_options(
        p, DecoderTrainConfig, documented, flags={"n_condition_layers": "--condition-layers"}, types=types
    )
    p.set_defaults(run=commands.cmd_train_decoder, interrupted=RESUME_HINT)

    p = sub.add_parser("evaluate", parents=[probed], help="score a probed model on held-out inputs")
    add_config_options(p, f"{PROBED}.train:evaluate_probed", ["n", "seed"], types={"n": whole_number(1)})
    _json_and_plot(p)
    p.set_defaults(run=commands.cmd_evaluate)


def _add_readings(sub, probed) -> None:
    p = sub.add_parser("invert", parents=[probed], help="sample and verify the ε-preimage of one activation")
    _reading_options(p, None)
    _view_options(p, limit=40)
    p.set_defaults(run=commands.cmd_invert)

    help_text = "write readings at one or more sites as a self-contained HTML file"
    p = sub.add_parser("report", parents=[probed], help=help_text)
    _reading_options(p, None)
    _view_options(p, limit=60)
    p.add_argument("--scan", type=whole_number(1), help="also include a patching scan over this many contrast pairs")
    p.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    p.set_defaults(run=commands.cmd_report)

    help_text = "put readings into words with a language model (any OpenAI-compatible endpoint)"
    p = sub.add_parser("explain", parents=[probed], help=help_text)
    _reading_options(p, SAMPLING, samples=500)
    _view_options(p, limit=40)
    p.add_argument("--llm-url", help="the endpoint, e.g. http://127.0.0.1:8080/v1 (key: $INVERSIONVIEW_LLM_KEY)")
    p.add_argument("--llm-model", help="the model name the endpoint serves")
    p.add_argument("--print-prompt", action="store_true", help="print the prompt and send nothing")
    p.set_defaults(run=commands.cmd_explain)

    p = sub.add_parser("exact", parents=[probed], help="the exact ε-preimage, by brute force over the inputs")
    _reading_options(p, ["seed", "metric", "epsilon"])
    options = {"flags": {"sample_size": "--space-sample"}, "defaults": {"limit": 20}}
    types = {"limit": whole_number(0), "sample_size": whole_number(1)}
    add_config_options(
        p, "inversionview.exact.preimage:exact_preimages", ["limit", "sample_size"], types=types, **options
    )
    p.add_argument("--yes", action="store_true", help="go ahead with a pass estimated to take over 10 minutes")
    p.set_defaults(run=commands.cmd_exact)

    p = sub.add_parser("completeness", parents=[probed], help="decoder precision and recall against the exact")
    _reading_options(p, SAMPLING, samples=10_000)
    p.add_argument("--plot", type=Path, help="write the completeness scatter to this PNG")
    options = {"flags": {"max_points": "--plot-points"}, "types": {"max_points": whole_number(0)}}
    add_config_options(p, f"{VIEWS}.plots:completeness_scatter", ["max_points"], **options)
    p.set_defaults(run=commands.cmd_completeness)


def _add_causal(sub, probed) -> None:
    help_text = "activation patching: the input's run with activations taken from a source input's"
    p = sub.add_parser("patch", parents=[probed], help=help_text)
    p.add_argument("--input", help="the input whose run is patched")
    source_help = "the input whose activations are patched in (same length), or 'auto': --n held-out inputs, "
    p.add_argument("--source", required=True, help=source_help + "each with a contrast from the task's own generator")
    patch_help = "SITE@POSITION to patch (positions as in invert: BOS = 0, negative from the end); repeat for several"
    p.add_argument("--patch", dest="patches", required=True, action="append", type=site_at, help=patch_help)
    add_config_options(p, f"{CAUSAL}.patch:contrast_pairs", ["n", "seed"], types=COUNT, defaults={"n": 100})
    add_config_options(p, f"{CAUSAL}.metrics:task_metric", ["target", "answer", "alt"])
    _json_and_plot(p)
    p.set_defaults(run=commands.cmd_patch)

    help_text = "patch one (position, component) cell at a time over --n contrast pairs: the grid of mean effects"
    p = sub.add_parser("patch-scan", parents=[probed], help=help_text)
    add_config_options(p, f"{CAUSAL}.scan:patch_scan", ["n", "seed"], types=COUNT, defaults={"n": 200})
    p.add_argument("--components", nargs="+", help=field_docs(f"{CAUSAL}.scan:patch_scan")["components"])
    cumulative = "instead: heads patched at every position, a growing set in layer order (or its reverse)"
    p.add_argument("--cumulative", choices=("forward", "backward"), help=cumulative)
    _json_and_plot(p, plot="the heatmap")
    p.set_defaults(run=commands.cmd_patch_scan)

    help_text = "how often each head's output makes up the residual stream at the answer position, beside patching"
    p = sub.add_parser("head-share", parents=[probed], help=help_text)
    add_config_options(p, f"{CAUSAL}.heads:head_share", None, types=COUNT, defaults={"n": 200})
    _json_and_plot(p, plot="the layer × head grids")
    p.set_defaults(run=commands.cmd_head_share)

    help_text = "at every site and named position, the features that held-out queries' readings keep"
    p = sub.add_parser("explain-map", parents=[probed], help=help_text)
    p.add_argument("--decoder", help="decoder directory (default: the bundled one)")
    add_config_options(p, "inversionview.interpret.explain_map:explain_map", None, types=COUNT, defaults={"n": 10})
    _json_and_plot(p, plot="the map")
    p.set_defaults(run=commands.cmd_explain_map)


def _add_tools(sub, probed) -> None:
    help_text = "list an input's positions and tokens as a reading sees them (BOS = 0, then from the end)"
    p = sub.add_parser("tokens", parents=[probed], help=help_text)
    p.add_argument("--input", required=True, help="the input to list")
    _json_and_plot(p)
    p.set_defaults(run=commands.cmd_tokens)

    help_text = "write the quotations of a fortune database (apt install fortunes) as a corpus, one a line"
    p = sub.add_parser("fortunes", help=help_text)
    p.add_argument("--out", type=file_to_write, required=True, help="the corpus file to write")
    folder = Path("/usr/share/games/fortunes")
    p.add_argument("--from", dest="source", type=Path, default=folder, help=f"the fortune folder ({folder})")
    p.set_defaults(run=commands.cmd_fortunes)

    p = sub.add_parser("view", parents=[probed], help="the web page, on 127.0.0.1 by default")
    p.add_argument("--decoder", help="decoder directory for --probed (default: the bundled one)")
    add_config_options(
        p, f"{VIEWS}.server:check_address", None, types=PORT, defaults={"host": "127.0.0.1", "port": 8501}
    )
    p.add_argument("--models-dir", type=Path, help="folder whose sub-folders hold probed/ and decoder/")
    p.set_defaults(run=commands.cmd_view)

    p = sub.add_parser("demo", parents=[probed], help="read a bundled model (counting, addition, ioi…) at three sites")
    add_config_options(p, f"{VIEWS}.demo:demo", None, types={"samples": whole_number(1), "limit": whole_number(1)})
    p.set_defaults(run=commands.cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="inversionview", description="Read the information in a model's activations.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    probed = probed_options()
    for add in (_add_training, _add_readings, _add_causal, _add_tools):
        add(sub, probed)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (tests call this directly)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = None
    try:
        args = build_parser().parse_args(argv)
        commands.check_paths(args)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        args.run(args)
    except UserError as exc:
        flags = args.option_flags() if args is not None else None
        print(f"error: {as_flags(str(exc), flags)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", "interrupted"), file=sys.stderr)
        return 130
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
