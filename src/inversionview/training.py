"""What every training loop here shares: seeding, the learning-rate schedule, and checkpoints.

A checkpoint is two files written atomically: ``checkpoint.safetensors`` (model and optimizer
tensors) and ``checkpoint.json`` (step, optimizer hyper-parameters and the loop's own state), so an
interrupted run resumes where it stopped and never loses more than one checkpoint interval. A run
asked to stop (Ctrl-C, or SIGTERM) finishes its step, saves, and ends: nothing is lost.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from inversionview.errors import UserError
from inversionview.storage import (
    CHECKPOINT_FILE,
    CHECKPOINT_STATE_FILE,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> random.Random:
    """Seed torch and return a Python RNG for data generation."""
    torch.manual_seed(seed)
    return random.Random(seed)


@contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """While inside, Ctrl-C and SIGTERM set the event instead of killing the process, so that the
    training loop can finish its step and save; a second Ctrl-C interrupts at once. Outside the main
    thread (where signals cannot be caught) the event is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request(signum, frame) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        log.warning("\nstopping after this step (saving a checkpoint); Ctrl-C again to stop at once")

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def progress_interval() -> float:
    """Seconds between progress-bar updates: lively on a terminal, sparse in a log file."""
    return 0.5 if sys.stderr.isatty() else 30.0


def lr_at(step: int, *, peak: float, warmup: int, total: int, floor: float = 0.1) -> float:
    """Linear warm-up, then cosine decay to ``floor * peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class Checkpoint:
    """Where a run stands: its step and whatever else the loop needs to resume."""

    step: int
    state: dict


def save_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, checkpoint: Checkpoint
) -> None:
    """Write model and optimizer tensors plus the loop's state; the JSON is written last."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for index, param_state in opt_state["state"].items():
        for key, value in param_state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
    # Tied weights appear twice in a state dict; safetensors refuses shared storage, so clone.
    tensors = {k: v.clone() for k, v in tensors.items()}
    save_tensors(directory / CHECKPOINT_FILE, tensors)
    write_json(
        directory / CHECKPOINT_STATE_FILE,
        {"step": checkpoint.step, "param_groups": opt_state["param_groups"], "state": checkpoint.state},
    )


def check_run(out: Path, steps: int) -> None:
    """Refuse, before any work, a run whose model could not be saved in ``out`` (a file), or would
    be saved after no steps and pass for a trained one."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a directory for the run")
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")


def saved_config(directory: Path) -> dict | None:
    """The training config a checkpoint in ``directory`` was made with, or None without one.

    A resumed run takes its shape from here, so a resume can never build a different model than
    the one whose weights it loads."""
    if not (directory / CHECKPOINT_STATE_FILE).is_file():
        return None
    return read_json(directory / CHECKPOINT_STATE_FILE, "training checkpoint")["state"].get("config")


def load_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Checkpoint | None:
    """Restore a run saved by ``save_checkpoint``; None when the directory holds none."""
    if not (directory / CHECKPOINT_STATE_FILE).is_file():
        return None
    meta = read_json(directory / CHECKPOINT_STATE_FILE, "training checkpoint")
    tensors = load_tensors(directory / CHECKPOINT_FILE, "training checkpoint")
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return Checkpoint(step=meta["step"], state=meta["state"])
