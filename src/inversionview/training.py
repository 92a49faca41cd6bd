"""The one training loop both trainers share (``fit``), with its seeding, learning-rate schedule and
checkpoints.

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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from inversionview.distributed import ONE_PROCESS, Ranks, fingerprint, wrapped
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


@dataclass
class RandomStreams:
    """Every random stream a run draws from: Python's for its data, a torch generator for its
    sampling. Both are checkpointed, so a resumed run draws exactly what it would have drawn."""

    seed: int
    data: random.Random
    torch: torch.Generator

    @classmethod
    def seeded(cls, seed: int) -> RandomStreams:
        """Seed torch's global generator (weights are initialised from it) and two streams."""
        return cls(seed=seed, data=seed_everything(seed), torch=torch.Generator().manual_seed(seed))

    def reseed(self, seed: int) -> None:
        self.data.seed(seed)
        self.torch.manual_seed(seed)

    def for_rank(self, rank: int, step: int) -> None:
        """Rank ``rank``'s own streams from ``step`` on: no two processes draw the same inputs. Rank
        0 keeps the run's own streams, so one process trains as it always did."""
        if rank > 0:
            self.reseed(self.seed + 1_000_003 * rank + step)

    def state(self) -> tuple[list, dict[str, torch.Tensor]]:
        """The Python stream's state as JSON, and the torch generators' as tensors."""
        version, internal, gauss = self.data.getstate()
        tensors = {"rng.torch": self.torch.get_state(), "rng.torch_global": torch.get_rng_state()}
        return [version, list(internal), gauss], tensors

    def restore(self, data_state: list, tensors: dict[str, torch.Tensor]) -> None:
        self.data.setstate((data_state[0], tuple(data_state[1]), data_state[2]))
        if "rng.torch" in tensors:
            self.torch.set_state(tensors["rng.torch"])
            torch.set_rng_state(tensors["rng.torch_global"])


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    checkpoint: Checkpoint,
    streams: RandomStreams,
) -> None:
    """Write model and optimizer tensors (and the random streams) plus the loop's state; the JSON
    is written last."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for index, param_state in opt_state["state"].items():
        for key, value in param_state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
    state = dict(checkpoint.state)
    state["rng"], rng_tensors = streams.state()
    tensors.update(rng_tensors)
    # Tied weights appear twice in a state dict; safetensors refuses shared storage, so clone.
    tensors = {k: v.clone() for k, v in tensors.items()}
    save_tensors(directory / CHECKPOINT_FILE, tensors)
    write_json(
        directory / CHECKPOINT_STATE_FILE,
        {"step": checkpoint.step, "param_groups": opt_state["param_groups"], "state": state},
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


def load_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    streams: RandomStreams,
) -> Checkpoint | None:
    """Restore a run saved by ``save_checkpoint`` (its random streams too, where it saved them);
    None when the directory holds none."""
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
    if "rng" in meta["state"]:
        streams.restore(meta["state"]["rng"], tensors)
    else:  # a checkpoint from before random state was saved: fresh, but reproducible
        streams.reseed(streams.seed + meta["step"])
    return Checkpoint(step=meta["step"], state=meta["state"])


MAX_WARMUP_SHARE = 10
"""A run's learning-rate warm-up is at most 1/10 of its steps: a short run must not end still warming up."""


@dataclass
class LoopSettings:
    """The shape of a run: how long, how fast it learns, how often it is measured and saved."""

    steps: int
    lr: float
    warmup: int
    eval_every: int
    checkpoint_every_s: float
    max_seconds: float | None = None
    """Stop (evaluating and saving first) once the run has trained this long, resumed time included."""

    @classmethod
    def of(cls, config) -> LoopSettings:
        """The loop's settings from a trainer's config, which names them alike (``max_seconds``
        where it has one). Warm-up never takes more than a tenth of the run."""
        settings = cls(**{f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)})
        settings.warmup = min(settings.warmup, settings.steps // MAX_WARMUP_SHARE)
        return settings


@dataclass
class Run:
    """A run in progress: its step, its training seconds (resumed time included), its history of
    evaluations, and its checkpoint state."""

    step: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


class Trainable(Protocol):
    """What a trainer brings to ``fit``: the model, its optimizer, and five hooks. ``loss`` calls
    the model as ``trained``, which ``fit`` sets: the model itself, or its DistributedDataParallel
    wrapper when the run has several processes."""

    model: torch.nn.Module
    trained: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, str]]:
        """One step's loss to minimise, and figures to show on the progress bar."""

    def evaluate(self, step: int, scheduled: bool) -> dict:
        """A record for the run's history; ``"done": True`` in it ends the run. ``scheduled`` is
        False for the extra evaluation of a run that ends between two scheduled ones: it must not
        change what later steps train on, so that a stopped run resumes as if never stopped."""

    def state(self) -> dict:
        """What the trainer needs to resume, as JSON (beside step, seconds, history and config)."""

    def restore(self, state: dict) -> None:
        """Take back what ``state`` returned."""

    def save(self, run: Run) -> None:
        """Write what the run has made so far, at each checkpoint (a decoder writes itself)."""


def fit(
    job: Trainable,
    out: Path,
    settings: LoopSettings,
    streams: RandomStreams,
    *,
    config: dict,
    desc: str,
    progress: bool = True,
    stop: threading.Event | None = None,
    ranks: Ranks = ONE_PROCESS,
) -> Run:
    """The training loop every trainer shares: resume from ``out``; then step, evaluate every
    ``eval_every`` steps, checkpoint every ``checkpoint_every_s`` seconds, and end (evaluated and
    saved) at the last step, at ``max_seconds``, or when ``stop`` is set.

    With several ``ranks`` every process steps together: each draws its own inputs, gradients are
    averaged, a stop asked of any process stops all after the same step, and rank 0 alone
    evaluates, shows progress, checkpoints and writes the model."""
    run = _resume(job, out, streams)
    streams.for_rank(ranks.rank, run.step)
    job.trained = wrapped(job.model, ranks)
    try:
        _steps(job, out, settings, streams, run, config=config, desc=desc, progress=progress, stop=stop, ranks=ranks)
    finally:
        # The wrapper goes before the process group (``distributed.leave``): its reducer, if it
        # were the group's last owner, would free the group holding the GIL while the group
        # waits for its threads, one of which may need the GIL to free its last collective.
        job.trained = job.model
    job.model.eval()
    return run


def _steps(
    job: Trainable,
    out: Path,
    settings: LoopSettings,
    streams: RandomStreams,
    run: Run,
    *,
    config: dict,
    desc: str,
    progress: bool,
    stop: threading.Event | None,
    ranks: Ranks,
) -> None:
    """``fit``'s loop, from ``run``'s step to the end (``fit`` has the options)."""
    started, last_checkpoint = time.monotonic() - run.seconds, time.monotonic()
    shown = {"disable": not (progress and ranks.main), "mininterval": progress_interval(), "desc": desc, "unit": "step"}
    with tqdm(total=settings.steps, initial=run.step, **shown) as bar:
        while run.step < settings.steps:
            bar.set_postfix(_train_step(job, settings, run.step), refresh=False)
            if run.step == 0 and ranks.active:
                run.history.append(
                    {"step": 0, "ranks_first_batch": ranks.gathered(getattr(job, "data_fingerprint", ""))}
                )
            run.step += 1
            bar.update(1)
            run.seconds = time.monotonic() - started
            out_of_time = settings.max_seconds is not None and run.seconds >= settings.max_seconds
            stopped = stop is not None and stop.is_set()
            due = time.monotonic() - last_checkpoint > settings.checkpoint_every_s
            final, due = ranks.agree(run.step == settings.steps or out_of_time or stopped, due and ranks.main)
            scheduled = run.step % settings.eval_every == 0
            if scheduled or final:
                final = _evaluate(job, run, ranks, scheduled, started) or final
            if final or due:
                run.seconds = time.monotonic() - started
                if final:
                    _finish_ranks(job, run, ranks)
                if ranks.main:
                    _save(job, out, run, streams, config)
                last_checkpoint = time.monotonic()
            if final:
                break


def _evaluate(job: Trainable, run: Run, ranks: Ranks, scheduled: bool, started: float) -> bool:
    """Rank 0 evaluates and the others take its record and the trainer state it leads to (site
    weights and the like); True when the evaluation ends the run."""
    job.model.eval()
    record = job.evaluate(run.step, scheduled) if ranks.main else None
    if ranks.active:
        record, state = ranks.from_main((record, job.state() if ranks.main else None))
        if not ranks.main:
            job.restore(state)
    record = dict(record)
    done = record.pop("done", False)
    if ranks.active:
        record.update(processes=ranks.world, backend=ranks.backend)
    run.history.append({"step": run.step, "seconds": round(time.monotonic() - started, 1), **record})
    return done


def _finish_ranks(job: Trainable, run: Run, ranks: Ranks) -> None:
    """Record each rank's parameter fingerprint at the end: equal when the ranks stayed in step."""
    if ranks.active:
        prints = ranks.gathered(fingerprint(*job.model.parameters()))
        run.history[-1]["ranks_in_step"] = len(set(prints)) == 1
        run.history[-1]["rank_parameters"] = prints


def _train_step(job: Trainable, settings: LoopSettings, step: int) -> dict[str, str]:
    job.model.train()
    for group in job.optimizer.param_groups:
        group["lr"] = lr_at(step, peak=settings.lr, warmup=settings.warmup, total=settings.steps)
    loss, shown = job.loss(step)
    job.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(job.model.parameters(), 1.0)
    job.optimizer.step()
    return shown


def _resume(job: Trainable, out: Path, streams: RandomStreams) -> Run:
    checkpoint = load_checkpoint(out, job.model, job.optimizer, streams)
    if checkpoint is None:
        return Run()
    log.info("resuming at step %d", checkpoint.step)
    job.restore(checkpoint.state)
    state = checkpoint.state
    return Run(checkpoint.step, state.get("seconds", 0.0), state.get("history", []))


def _save(job: Trainable, out: Path, run: Run, streams: RandomStreams, config: dict) -> None:
    state = {"seconds": run.seconds, "history": run.history, "config": config, **job.state()}
    save_checkpoint(out, job.model, job.optimizer, Checkpoint(run.step, state), streams)
    job.save(run)
