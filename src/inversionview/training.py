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
from tqdm.contrib.logging import logging_redirect_tqdm

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


def lr_at_time(fraction: float, *, peak: float, warmup_share: float, floor: float = 0.1) -> float:
    """``lr_at`` over a time budget: linear warm-up over the first ``warmup_share`` of the time, then
    cosine decay to ``floor * peak`` when the time ends; ``fraction`` is the share of it spent."""
    if fraction < warmup_share:
        return peak * max(fraction, 1e-3) / warmup_share
    progress = min(1.0, (fraction - warmup_share) / (1 - warmup_share))
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
        raise UserError(f"`out` {out} is a file; name a directory for the run")
    if steps < 1:
        raise UserError(f"`steps` must be at least 1, got {steps}")


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

BUDGET_WARMUP_SHARE = 0.03
"""A budgeted run warms its learning rate up over this share of its time."""
BUDGET_EVALUATIONS = (0.25, 0.5, 0.75)
"""When, as shares of its training time, a budgeted run evaluates (and re-weights what it trains on),
besides the final evaluation."""
FIRST_RESERVE_SHARE = 0.08
"""Of a budget, what is held back for the final evaluation and save until one evaluation is timed."""
RESERVE_MARGIN = 1.5
"""The final evaluation is planned to take at most this many times the longest one timed."""


@dataclass
class Budget:
    """A run planned to end, evaluated and saved, within ``seconds`` of wall time (start-up included).

    The learning-rate schedule runs over time, not steps. The time held back for the final
    evaluation and save (``reserve``) is a share of the budget until an evaluation has been timed,
    then ``RESERVE_MARGIN`` times the slowest one timed (at most half the budget)."""

    seconds: float
    reserve: float = 0.0
    timed_evaluation: float = 0.0
    """The slowest evaluation timed so far, in seconds (0 before the first)."""
    evaluations_done: int | None = None
    """How many of ``BUDGET_EVALUATIONS`` the run has passed; None until the run's time is known."""

    def __post_init__(self) -> None:
        self.reserve = self.reserve or FIRST_RESERVE_SHARE * self.seconds

    def evaluation_due(self, seconds: float) -> bool:
        """Whether the run, ``seconds`` in, has reached its next planned evaluation (each is due
        once, whatever the reserve's changes do to the shares; a resumed run skips those passed)."""
        fraction = self.fraction(seconds)
        passed = sum(share <= fraction for share in BUDGET_EVALUATIONS)
        if self.evaluations_done is None:
            self.evaluations_done = passed
            return False
        if passed <= self.evaluations_done:
            return False
        self.evaluations_done += 1
        return True

    @property
    def training_seconds(self) -> float:
        """Seconds of the run before its final evaluation."""
        return max(1e-9, self.seconds - self.reserve)

    def fraction(self, seconds: float) -> float:
        """The share of the training time spent after ``seconds`` of the run."""
        return seconds / self.training_seconds

    def resumed(self, run: Run) -> None:
        """Take up the plan of a resumed ``run``: the evaluations it has passed are skipped, and its
        final evaluation is planned from the ones it timed."""
        timed = [record.get("evaluation_seconds", 0.0) for record in run.history]
        if any(timed):
            self.timed(max(timed))
        self.evaluation_due(run.seconds)

    def timed(self, evaluation_seconds: float) -> None:
        """Plan the final evaluation from one that took ``evaluation_seconds``."""
        self.timed_evaluation = max(self.timed_evaluation, evaluation_seconds)
        self.reserve = min(RESERVE_MARGIN * self.timed_evaluation + 1.0, 0.5 * self.seconds)


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
    budget: Budget | None = None
    """A time budget the whole run is planned by (``Budget``); ``steps`` then only bounds it."""

    @classmethod
    def of(cls, config) -> LoopSettings:
        """The loop's settings from a trainer's config, which names them alike (``max_seconds``
        where it has one, ``minutes`` for a budget). Warm-up never takes more than a tenth of the run."""
        names = [f.name for f in fields(cls) if f.name != "budget" and hasattr(config, f.name)]
        settings = cls(**{name: getattr(config, name) for name in names})
        settings.warmup = min(settings.warmup, settings.steps // MAX_WARMUP_SHARE)
        if getattr(config, "minutes", None) is not None:
            settings.budget = Budget(60.0 * config.minutes)
        return settings

    def learning_rate(self, step: int, seconds: float) -> float:
        """The learning rate of ``step``, taken ``seconds`` into the run."""
        if self.budget is None:
            return lr_at(step, peak=self.lr, warmup=self.warmup, total=self.steps)
        return lr_at_time(self.budget.fraction(seconds), peak=self.lr, warmup_share=BUDGET_WARMUP_SHARE)

    def evaluation_due(self, step: int, seconds: float) -> bool:
        """Whether ``step``, ending ``seconds`` into the run, ends with a scheduled evaluation."""
        if self.budget is None:
            return step % self.eval_every == 0
        return self.budget.evaluation_due(seconds)

    def out_of_time(self, seconds: float) -> bool:
        """Whether the run must end now to stay within its time (``max_seconds``, or its budget)."""
        if self.max_seconds is not None and seconds >= self.max_seconds:
            return True
        return self.budget is not None and seconds >= self.budget.training_seconds


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
    started_at: float | None = None,
) -> Run:
    """The training loop every trainer shares: resume from ``out``; then step, evaluate every
    ``eval_every`` steps, checkpoint every ``checkpoint_every_s`` seconds, and end (evaluated and
    saved) at the last step, at ``max_seconds``, when a ``settings.budget`` is spent, or when
    ``stop`` is set. ``started_at`` (``time.monotonic``) is when this session's share of the run's
    time began (default: now); a budget counts the start-up before ``fit`` from there.

    With several ``ranks`` every process steps together: each draws its own inputs, gradients are
    averaged, a stop asked of any process stops all after the same step, and rank 0 alone
    evaluates, shows progress, checkpoints and writes the model."""
    run = _resume(job, out, streams)
    streams.for_rank(ranks.rank, run.step)
    job.trained = wrapped(job.model, ranks)
    try:
        loop = {"config": config, "desc": desc, "progress": progress, "stop": stop, "ranks": ranks}
        _steps(job, out, settings, streams, run, started_at=started_at, **loop)
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
    started_at: float | None,
) -> None:
    """``fit``'s loop, from ``run``'s step to the end (``fit`` has the options)."""
    clock = started_at if started_at is not None else time.monotonic()
    started, last_checkpoint = clock - run.seconds, time.monotonic()
    # On a terminal a bar; in a log (output captured or redirected) a line every LOGGED_EVERY_S
    # instead, so that no line of the log is a bar's redrawing with an evaluation's line after it.
    on_terminal = sys.stderr.isatty()
    shown = {"disable": not (progress and ranks.main and on_terminal), "mininterval": progress_interval()}
    total = None if settings.budget else settings.steps  # a budgeted run's steps are what its time allows
    if settings.budget:
        settings.budget.resumed(run)
    logged = _ProgressLines(desc, total, first_step=run.step, active=progress and ranks.main and not on_terminal)
    logged.line(run.step)
    # Log lines (each evaluation's) go through the bar, so they never share its line.
    with logging_redirect_tqdm(), tqdm(total=total, initial=run.step, desc=desc, unit="step", **shown) as bar:
        while run.step < settings.steps:
            bar.set_postfix(_train_step(job, settings, run), refresh=False)
            logged.maybe(run.step + 1)
            if run.step == 0 and ranks.active:
                run.history.append(
                    {"step": 0, "ranks_first_batch": ranks.gathered(getattr(job, "data_fingerprint", ""))}
                )
            run.step += 1
            bar.update(1)
            (run.seconds,) = ranks.largest(time.monotonic() - started)  # one clock for every rank
            stopped = stop is not None and stop.is_set()
            due = time.monotonic() - last_checkpoint > settings.checkpoint_every_s
            ending = run.step == settings.steps or settings.out_of_time(run.seconds) or stopped
            final, due = ranks.agree(ending, due and ranks.main)
            scheduled = settings.evaluation_due(run.step, run.seconds)
            if scheduled or final:
                final = _evaluate(job, run, ranks, scheduled, started, settings.budget) or final
            if final or due:
                run.seconds = time.monotonic() - started
                if final:
                    _finish_ranks(job, run, ranks)
                if ranks.main:
                    _save(job, out, run, streams, config)
                last_checkpoint = time.monotonic()
            if final:
                break


LOGGED_EVERY_S = 30.0
"""Seconds between progress lines in a log."""


class _ProgressLines:
    """Training's progress as log lines, for a log where a bar cannot redraw itself."""

    def __init__(self, desc: str, total: int | None, *, first_step: int, active: bool) -> None:
        self.desc, self.total, self.active = desc, total, active
        self.first_step = first_step  # a resumed run's rate counts only the steps it trains now
        self.started, self.last = time.monotonic(), time.monotonic()

    def line(self, step: int) -> None:
        if self.active:
            of = f" of {self.total:,}" if self.total else ""
            rate = (step - self.first_step) / max(time.monotonic() - self.started, 1e-9)
            log.info("%s: step %s%s (%.1f steps/s)", self.desc, f"{step:,}", of, rate)

    def maybe(self, step: int) -> None:
        if self.active and time.monotonic() - self.last >= LOGGED_EVERY_S:
            self.last = time.monotonic()
            self.line(step)


def _evaluate(
    job: Trainable, run: Run, ranks: Ranks, scheduled: bool, started: float, budget: Budget | None = None
) -> bool:
    """Rank 0 evaluates and the others take its record and the trainer state it leads to (site
    weights and the like); True when the evaluation ends the run. A ``budget`` learns from its
    duration how long the final evaluation will take."""
    job.model.eval()
    evaluation_started = time.monotonic()
    record = job.evaluate(run.step, scheduled) if ranks.main else None
    (took,) = ranks.largest(time.monotonic() - evaluation_started)
    if budget is not None:
        budget.timed(took)
    if ranks.active:
        record, state = ranks.from_main((record, job.state() if ranks.main else None))
        if not ranks.main:
            job.restore(state)
    record = dict(record)
    done = record.pop("done", False)
    if ranks.active:
        record.update(processes=ranks.world, backend=ranks.backend)
    seconds = round(time.monotonic() - started, 1)
    run.history.append({"step": run.step, "seconds": seconds, "evaluation_seconds": round(took, 2), **record})
    return done


def _finish_ranks(job: Trainable, run: Run, ranks: Ranks) -> None:
    """Record each rank's parameter fingerprint at the end: equal when the ranks stayed in step."""
    if ranks.active:
        prints = ranks.gathered(fingerprint(*job.model.parameters()))
        run.history[-1]["ranks_in_step"] = len(set(prints)) == 1
        run.history[-1]["rank_parameters"] = prints


def _train_step(job: Trainable, settings: LoopSettings, run: Run) -> dict[str, str]:
    job.model.train()
    for group in job.optimizer.param_groups:
        group["lr"] = settings.learning_rate(run.step, run.seconds)
    loss, shown = job.loss(run.step)
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
