"""Flags written from the library's documented configs and parameters (``options.py``): each flag's
default is the library's own, so a command line that sets nothing reads as Python would."""

from dataclasses import fields

from inversionview.cli import build_parser
from inversionview.decoder.config import DecoderTrainConfig
from inversionview.exact.space import DEFAULT_SAMPLE_SIZE
from inversionview.inversion.spec import ReadingSpec
from inversionview.options import config_values, documented, field_docs
from inversionview.probed.source import ProbedSource

QUERY = ["--input", "vzc|v:1", "--position", "-2", "--site", "blocks.0.hook_resid_post"]


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_a_reading_that_sets_nothing_is_the_default_spec_and_source():
    args = parse("invert", *QUERY)
    assert ReadingSpec(**config_values(args, ReadingSpec)) == ReadingSpec()
    assert ProbedSource(**config_values(args, ProbedSource)) == ProbedSource()


def test_a_parameter_default_that_names_an_imported_constant_is_read_through_the_import():
    assert documented("inversionview.exact.preimage:exact_preimages")["sample_size"].default == DEFAULT_SAMPLE_SIZE
    args = parse("exact", *QUERY)
    assert (args.sample_size, args.limit) == (DEFAULT_SAMPLE_SIZE, 20)  # the library's, and the command's own


def test_every_documented_training_field_is_a_flag_with_its_default():
    args = parse("train-decoder", "--out", "run")
    assert DecoderTrainConfig(**config_values(args, DecoderTrainConfig)) == DecoderTrainConfig()
    assert set(field_docs(DecoderTrainConfig)) <= {f.name for f in fields(DecoderTrainConfig)}
    assert parse("train-decoder", "--out", "run", "--sites", "a, b").sites == ["a", "b"]


def command_help(name: str) -> str:
    """A command's --help, its lines joined (argparse wraps them at the terminal's width)."""
    text = build_parser()._subparsers._group_actions[0].choices[name].format_help()
    return " ".join(text.split())


def test_help_comes_from_the_docs_first_sentence_with_parameters_as_flags():
    help_text = command_help("invert")
    assert "inputs drawn from the decoder (default 1,000)" in help_text
    assert "{euclidean,cosine,whitened}" in help_text
    sequences = command_help("evaluate")
    assert "token of --tokens" in sequences  # a `parameter` in a doc is shown as its flag
    assert "e.g. counting" in sequences  # "e.g." does not end the first sentence


def test_a_function_documents_its_parameters_in_its_args_section():
    options = documented("inversionview.causal.heads:head_share")
    assert options["threshold"].default == 0.3 and options["threshold"].doc.startswith("Share of its layer")
    assert options["n"].doc == "Held-out prompts."
