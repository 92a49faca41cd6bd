"""A decoder run planned by a time budget: its schedule, its end, its resume and its refusals."""

import json
import subprocess
import sys
import time

import pytest

from inversionview.cli import main
from inversionview.decoder.train import DecoderTrainConfig, read_run_summary, train_decoder
from inversionview.storage import CHECKPOINT_STATE_FILE
from inversionview.training import BUDGET_EVALUATIONS, Budget, LoopSettings, lr_at_time

TINY = {"d_model": 32, "n_heads": 2, "n_layers": 1, "batch_size": 16, "eval_queries": 2, "eval_samples": 4}


def test_the_learning_rate_warms_up_then_decays_over_the_time():
    peak = 1e-2
    rates = [lr_at_time(f, peak=peak, warmup_share=0.1) for f in (0.0, 0.05, 0.1, 0.55, 1.0, 1.5)]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(peak)
    assert rates[3] == pytest.approx(peak * (0.1 + 0.9 * 0.5))  # half-way down the cosine
    assert rates[4] == rates[5] == pytest.approx(0.1 * peak)  # the floor, and no further


def test_a_budget_plans_its_evaluations_and_holds_back_time_for_the_last():
    settings = LoopSettings.of(DecoderTrainConfig(minutes=1.0, steps=10**9, warmup=500, eval_every=2000))
    budget = settings.budget
    assert budget.seconds == 60 and budget.reserve == pytest.approx(0.08 * 60)
    first = BUDGET_EVALUATIONS[0] * budget.training_seconds
    assert not settings.evaluation_due(1, 0.0)  # the run's start
    assert not settings.evaluation_due(7, first - 0.1)
    assert settings.evaluation_due(8, first + 0.1)
    assert not settings.evaluation_due(2000, first + 0.2)  # once each; steps no longer decide
    budget.timed(4.0)  # an evaluation that took 4 s: the last one is planned at 1.5 times that
    assert budget.reserve == pytest.approx(7.0)
    assert settings.out_of_time(53.0) and not settings.out_of_time(52.9)
    assert Budget(10.0, reserve=0).reserve == pytest.approx(0.8)


def test_a_budgeted_run_ends_in_time_records_its_precision_and_resumes_its_plan(tiny_probed, tmp_path):
    started = time.monotonic()
    train_decoder(tiny_probed, DecoderTrainConfig(minutes=0.25, **TINY), tmp_path, progress=False)
    took = time.monotonic() - started
    summary = read_run_summary(tmp_path)
    print(f"a 15-second budget took {took:.1f} s")
    # A generous bound, so that a loaded machine (CI beside a training run took 25.8 s) never fails
    # it; the figure is printed, and benchmarks/time_to_precision.py measures budgets properly.
    assert took < 2 * 15 + 10
    assert summary["steps"] >= 3 and 0 <= summary["precision"] <= 1
    assert summary["lowest_site"]["site"] in summary["history"][-1]["precision"]
    assert 0 <= summary["precision_se"] <= 0.5  # over the (at least 2) held-out queries
    # A quarter, a half, three quarters and the end; on a loaded machine one evaluation may take a
    # share of the time that holds another, which then follows at the next step.
    evaluations = [record["step"] for record in summary["history"] if "mean_precision" in record]
    assert 2 <= len(evaluations) <= len(BUDGET_EVALUATIONS) + 1 and evaluations[-1] == summary["steps"]
    assert len(set(evaluations)) == len(evaluations)
    saved = json.loads((tmp_path / CHECKPOINT_STATE_FILE).read_text())["state"]["config"]
    assert saved["minutes"] == 0.25
    # The same command again continues the plan: its time is spent, so it ends after one more step.
    train_decoder(tiny_probed, DecoderTrainConfig(**TINY), tmp_path, progress=False)
    assert read_run_summary(tmp_path)["steps"] == summary["steps"] + 1
    # A larger budget extends it.
    train_decoder(tiny_probed, DecoderTrainConfig(minutes=0.4, **TINY), tmp_path, progress=False)
    assert read_run_summary(tmp_path)["steps"] > summary["steps"] + 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--minutes", "0"], "--minutes must be above 0"),
        (["--minutes", "-2"], "--minutes must be above 0"),
        (["--minutes", "1", "--steps", "10"], "not allowed with argument"),
    ],
)
def test_a_bad_budget_is_one_line(flags, message, tmp_path, capsys):
    assert main(["train-decoder", "--probed", "counting", "--out", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "run").exists()


def test_train_decoder_minutes_ends_in_time_with_its_precision(tmp_path):
    """The command, start-up included, ends within its budget plus a margin; its last line is the
    precision reached."""
    command = [sys.executable, "-m", "inversionview", "train-decoder", "--probed", "counting"]
    command += ["--out", str(tmp_path / "run"), "--minutes", "0.5", "--threads", "1"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    print(f"train-decoder --minutes 0.5 took {took:.1f} s")
    assert done.returncode == 0, done.stderr
    assert took < 30 + 10
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"saved decoder to {tmp_path / 'run'}") and "mean precision" in last
    assert "on 16 held-out queries a site" in last  # training's check, not the benchmark's figure
