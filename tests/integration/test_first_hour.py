"""What a newcomer meets in the first hour: a quick command line, readings that show the ε boundary,
long work announced, training that says what it reached, and tokens listed as a reading sees them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from inversionview.cli import main
from inversionview.decoder.config import DecoderTrainConfig
from inversionview.decoder.schedule import parse_schedule
from inversionview.decoder.store import load_decoder
from inversionview.inversion.invert import invert
from inversionview.probed import load_probed
from inversionview.training import LoopSettings
from inversionview.views.terminal import render
from tests.commands import cli_args

README = Path(__file__).resolve().parents[2] / "README.md"
QUERY = {"input": "vvzccvczvv|v:5", "position": -2, "site": "blocks.1.hook_resid_post"}
READ = ("vvzccvczvv|v:5", -2, "blocks.1.hook_resid_post")  # the same query, as invert() takes it


@pytest.mark.parametrize("argv", [["--help"], ["invert", "--help"], ["invert", "--bogus"]])
def test_the_command_line_answers_help_and_usage_errors_at_once(argv):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "inversionview.cli", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    print(f"{argv} answered in {seconds:.2f} s")  # about 1 s on an idle 2-core machine
    # What keeps it quick is that no model library is imported (the test below); on shared cores
    # the bound is generous, so the test never fails for the machine's load.
    assert done.returncode in (0, 2) and seconds <= 20, f"{argv} took {seconds:.2f} s"


def test_the_command_line_imports_no_model_library_before_a_command_needs_one():
    code = "import sys, inversionview.cli; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


BAD_PATHS = [
    (["invert", "--probed", "/no/such/model"], "no probed model '/no/such/model'"),
    (["invert", "--decoder", "/no/such/decoder"], "decoder directory /no/such/decoder does not exist"),
    (["invert", "--features", "/no/such/features.py"], "--features /no/such/features.py: name a Python file"),
    (["completeness", "--plot", "scatter.txt"], "scatter.txt: a plot is written as PNG"),
    (["train-decoder", "--steps", "1", "--out", "/proc/no-such-run"], "cannot create the folder /proc/no-such-run"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_PATHS)
def test_a_bad_file_or_folder_is_refused_before_a_model_library_is_imported(argv, message):
    query = ["--input", QUERY["input"], "--position", str(QUERY["position"]), "--site", QUERY["site"]]
    argv = [*argv, *query] if argv[0] != "train-decoder" else argv
    code = (
        "import sys; from inversionview.cli import main; code = main(sys.argv[1:]); "
        "print(code, sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert done.stdout.strip() == "2 []", done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_reading_far_beyond_minutes_is_refused_with_its_estimate(capsys, tiny_probed_dir, tiny_decoder_dir):
    args = cli_args("invert", probed=tiny_probed_dir, decoder=tiny_decoder_dir, samples=10_000_000, **QUERY)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--samples 10,000,000 would take about" in err and "--yes" in err and len(err.strip().splitlines()) == 1


def test_a_reading_with_every_sample_inside_searches_for_the_boundary():
    """The view needs samples on both sides: when the schedule's all land inside ε, broader ones are
    drawn until some fall outside; they are shown below the line, not counted in the precision."""
    probed = load_probed("counting")
    decoder = load_decoder(None, probed)
    greedy = parse_schedule(None, temperature=0)  # every sample the same, most likely input
    first = invert(probed, decoder, *READ, samples=20, schedule=greedy, find_boundary=False)
    epsilon = first.samples[-1].distance + 1e-4  # all of them inside
    result = invert(probed, decoder, *READ, samples=20, schedule=greedy, epsilon=epsilon)
    assert result.precision == 1.0 and "found" in result.boundary_note
    searched = [s for s in result.samples if s.boundary_search]
    assert searched and any(not s.in_preimage for s in searched)
    console = Console(record=True, width=200)
    render(result, console, limit=10)
    below = console.export_text().split("ε = ")[-1]
    assert any(s.text in below for s in searched if not s.in_preimage)


def test_a_reading_that_no_sample_can_leave_says_so(tiny_probed, tiny_decoder_dir):
    """At BOS every input has the same activation: nothing can fall outside ε, and the view says so."""
    result = invert(tiny_probed, load_decoder(tiny_decoder_dir, tiny_probed), "abcab|a:2", 0, "blocks.0.hook_resid_pre")
    assert result.precision == 1.0 and "nor any" in result.boundary_note
    console = Console(record=True, width=200)
    render(result, console)
    assert "no sample fell outside" in console.export_text()


def test_train_decoder_says_what_its_precision_means(caplog, capsys, tiny_probed_dir, tmp_path):
    shape = {"d_model": 16, "n_layers": 1, "batch_size": 8, "eval_every": 2}
    with caplog.at_level(logging.INFO, logger="inversionview"):
        assert main(cli_args("train-decoder", probed=tiny_probed_dir, out=tmp_path / "run", steps=4, **shape)) == 0
    # Captured output is a log: progress comes as lines, never as a bar redrawn under the evaluations'.
    assert "\r" not in capsys.readouterr().err
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("train-decoder: step 0 of 4")
    assert sum("mean precision" in m for m in messages) == 3  # steps 2 and 4, then the verdict
    assert any("usable" in m and ("--steps" in m or "most samples" in m) for m in messages)


def test_warm_up_never_takes_more_than_a_tenth_of_the_run():
    assert LoopSettings.of(DecoderTrainConfig(steps=300)).warmup == 30
    assert LoopSettings.of(DecoderTrainConfig(steps=100_000)).warmup == 500


def test_tokens_lists_the_positions_a_reading_sees(capsys):
    assert main(["tokens", "--input", "vvzccvczvv|v:5", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["tokens"]
    assert [t["position"] for t in listed] == list(range(15)) and listed[0]["token"] == "<BOS>"
    assert listed[13]["token"] == ":" and listed[13]["names"] == [":"]  # `--position -2` or `--position :`
    assert listed[12]["names"] == ["query letter"] and listed[3]["names"] == []
    assert main(["tokens", "--input", "vvzccvczvv|v:5"]) == 0
    shown = capsys.readouterr().out
    assert "      13        -2  :                :\n" in shown
    assert "      12        -3  v                query letter\n" in shown


def test_ctrl_c_says_what_fits_the_command(capsys, monkeypatch, tiny_probed_dir, tiny_decoder_dir, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("inversionview.views.reading.invert", interrupted)
    assert main(cli_args("invert", probed=tiny_probed_dir, decoder=tiny_decoder_dir, **QUERY)) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    monkeypatch.setattr("inversionview.decoder.train.train_decoder", interrupted)
    assert main(cli_args("train-decoder", probed=tiny_probed_dir, out=tmp_path / "run", steps=2)) == 130
    assert "resumes from its last checkpoint" in capsys.readouterr().err


def test_the_readme_says_what_the_install_line_installs():
    text = README.read_text()
    assert "CUDA build" in text and "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text


def test_long_work_shows_its_progress_and_estimate_on_stderr(capsys, monkeypatch):
    """`invert --samples 10000000` once ran 150 s without a word: work past two seconds shows a bar."""
    from inversionview.views import progress as progress_module

    monkeypatch.setattr(progress_module, "LOGGED_PROGRESS_SECONDS", 0.2)  # stderr is captured here, as in a log
    with progress_module.progress_bar("sampling blocks.1.hook_resid_post", "sample") as progress:
        progress(100, 10_000)
        time.sleep(0.3)
        progress(200, 10_000)
    err = capsys.readouterr().err
    assert "sampling blocks.1.hook_resid_post" in err and "200/10000" in err and "<" in err  # "<" precedes the ETA
