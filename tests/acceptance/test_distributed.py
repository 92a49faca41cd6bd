"""Decoder training on several processes: ``torchrun`` with gloo on this CPU, two ranks, tiny models.

A 2-process run at per-rank batch B is compared with 1-process runs at batch 2B. The ranks draw
other inputs than the single process does, so the curves cannot be equal; the yardstick is the gap
between two single-process runs that differ only in their data seed: the distributed run must stay
within twice that gap of the single-process one (with a floor of 0.05 in loss).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from inversionview.cli import main
from tests.commands import cli_args

SHAPE = {"d_model": 16, "n_layers": 1, "eval_every": 4}


def torchrun(args: list[str], processes: int = 2, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    command += ["--standalone", "-m", "inversionview", *args, "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True, **popen
    )


def descendants(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [grandchild for child in map(int, children) for grandchild in (child, *descendants(child))]


def finish(run: subprocess.Popen, timeout: float) -> str:
    """The run's output once it ends. Past ``timeout`` every process of the run (torchrun and its
    ranks, which it starts in sessions of their own) is sent SIGABRT, on which each prints where it
    stood (PYTHONFAULTHANDLER), then killed, and the test fails with what the run said: no rank
    outlives the test, and a hang shows its place."""
    try:
        return run.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        processes = [run.pid, *descendants(run.pid)]
        for sent in (signal.SIGABRT, signal.SIGKILL):
            for pid in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sent)
            time.sleep(2)
        output = run.communicate()[0]
        pytest.fail(f"torchrun still running after {timeout} s; its output:\n{output[-4000:]}")


def history(out) -> list[dict]:
    return json.loads((out / "decoder.json").read_text())["provenance"]["history"]


def losses(out) -> list[float]:
    return [record["loss"] for record in history(out) if "loss" in record]


def test_two_processes_train_one_decoder(tiny_probed_dir, tmp_path):
    out = tmp_path / "two"
    args = cli_args("train-decoder", probed=tiny_probed_dir, out=out, steps=12, batch_size=8, **SHAPE)
    run = torchrun(args)
    output = finish(run, timeout=120)
    assert run.returncode == 0, output
    assert output.count("saved decoder to") == 1  # rank 0 speaks for the run
    records = history(out)
    first, last = records[0], records[-1]
    assert len(set(first["ranks_first_batch"])) == 2  # the ranks drew different inputs
    assert last["ranks_in_step"] and len(set(last["rank_parameters"])) == 1  # and ended with equal weights
    assert (last["processes"], last["global_batch"], last["samples_seen"]) == (2, 16, 12 * 16)

    # The same recipe on one process at twice the batch, from the same seed and from another.
    for name, seed in (("one", 0), ("reseeded", 1)):
        one = cli_args("train-decoder", probed=tiny_probed_dir, out=tmp_path / name, steps=12, batch_size=16, seed=seed)
        assert main(one + [f"--{k.replace('_', '-')}={v}" for k, v in SHAPE.items()]) == 0
    same_seed = [abs(a - b) for a, b in zip(losses(out), losses(tmp_path / "one"))]
    reseeded = [abs(a - b) for a, b in zip(losses(tmp_path / "reseeded"), losses(tmp_path / "one"))]
    assert max(same_seed) <= max(2 * max(reseeded), 0.05), (same_seed, reseeded)

    # Resumed with another number of processes: one, where two trained.
    assert main(cli_args("train-decoder", probed=tiny_probed_dir, out=out, steps=16, batch_size=8, **SHAPE)) == 0
    assert history(out)[-1]["step"] == 16

    # The decoder reads like any other.
    query = {"input": "vvzccvczvv|v:5", "position": -2, "site": "blocks.1.hook_resid_post", "samples": 10}
    assert main(cli_args("invert", probed=tiny_probed_dir, decoder=out, **query, json=True)) == 0


def test_a_rank_that_dies_ends_the_run(tiny_probed_dir, tmp_path):
    out = tmp_path / "killed"
    args = cli_args("train-decoder", probed=tiny_probed_dir, out=out, steps=100_000, batch_size=8, **SHAPE)
    run = torchrun(args)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("step 4 loss" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)  # rank 0 has evaluated once: both ranks are training
        workers = [str(pid) for pid in descendants(run.pid)]
        assert len(workers) == 2, workers
        killed_at = time.monotonic()
        os.kill(int(max(workers, key=int)), signal.SIGKILL)
        run.wait(timeout=90)
        ended_in = time.monotonic() - killed_at
        reader.join(timeout=10)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    output = "".join(lines)
    assert run.returncode != 0
    # Rank 0 learns at its next collective that its peer is gone (2.5 s when measured), or torchrun,
    # having seen the rank die, stops it within its 30 s grace period: never a hang.
    assert ended_in < 45, ended_in
    ours = "error: another process of this run ended; the last checkpoint" in output
    assert ours or "Root Cause (first observed failure)" in output, output[-3000:]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a GPU")
def test_one_process_per_gpu(tiny_probed_dir, tmp_path):
    import torch

    out = tmp_path / "gpu"
    processes = torch.cuda.device_count()
    args = cli_args("train-decoder", probed=tiny_probed_dir, out=out, steps=8, batch_size=8, **SHAPE)
    run = torchrun(args, processes=processes)
    output = finish(run, timeout=300)
    assert run.returncode == 0, output
    last = history(out)[-1]
    assert last["backend"] == "nccl" and last["device"] == "cuda" and last["ranks_in_step"]
