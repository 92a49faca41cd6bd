"""Training a probed model from scratch on its task, and scoring it on held-out inputs."""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from inversionview.distributed import join, leave
from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel, new_gpt2, resolve_device
from inversionview.tasks import Task, get_task
from inversionview.training import LoopSettings, RandomStreams, Run, check_run, fit, saved_config

log = logging.getLogger(__name__)


@dataclass
class ProbedTrainConfig:
    """How to train a probed model. The defaults are the bundled counting model's recipe."""

    task: str = "counting"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    steps: int = 4_000
    batch_size: int = 128
    lr: float = 3e-3
    warmup: int = 300
    weight_decay: float = 0.01
    seed: int = 0
    eval_every: int = 250
    eval_size: int = 1000
    checkpoint_every_s: float = 120.0
    stop_at_accuracy: float | None = None
    full_sequence_loss: bool = True
    """Learn every next token of the input, not only the scored ones. Count-only training sits on a
    plateau near 21 % accuracy for thousands of steps; the full-sequence loss leaves it in ~1,000."""


@dataclass
class EvalResult:
    accuracy: float
    n: int
    groups: dict[str, dict[str, float]] | None = None
    """Accuracy by the task's ``evaluation_group`` over both splits, when the task has a breakdown."""

    def to_dict(self, task: Task) -> dict:
        extra = {task.breakdown: self.groups} if task.breakdown and self.groups is not None else {}
        return {"accuracy": self.accuracy, "n": self.n, **extra}


RECIPES = {
    "counting": ProbedTrainConfig(),
    # The paper's addition model: d_model 32, 4 heads; scored on the answer digits and their EOS.
    # A small word-level IOI model: 2 layers, d_model 64, 4 heads, trained on whole sentences.
    "ioi": ProbedTrainConfig(task="ioi", d_model=64, n_heads=4, steps=3_000, batch_size=128, lr=3e-3, eval_every=250),
    "addition": ProbedTrainConfig(
        task="addition",
        d_model=32,
        n_heads=4,
        steps=30_000,
        batch_size=256,
        lr=3e-3,
        warmup=500,
        full_sequence_loss=False,
        eval_every=1000,
        eval_size=2000,
    ),
    # Facts about 3,552 cities: 4 layers of 8 heads, so that recall has heads to find (head-share);
    # scored on the answer tokens, which is what must be memorised.
    "facts": ProbedTrainConfig(
        task="facts",
        d_model=128,
        n_layers=4,
        n_heads=8,
        steps=5_000,
        batch_size=256,
        lr=3e-3,
        warmup=500,
        full_sequence_loss=False,
        eval_every=1000,
        eval_size=2000,
    ),
}


def recipe_for(task: str, *, seed: int = 0, steps: int | None = None) -> ProbedTrainConfig:
    """The recipe that made the bundled model for ``task``, with a different seed or length."""
    if task not in RECIPES:
        raise UserError(f"no training recipe for task {task!r}; known: {', '.join(sorted(RECIPES))}")
    return replace(RECIPES[task], seed=seed, steps=RECIPES[task].steps if steps is None else steps)


def target_batch(
    task: Task, texts: list[str], pad_id: int, all_positions: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(B, T)`` and next-token labels ``(B, T)``, -100 where nothing is scored.

    With ``all_positions`` every next token is a label, not only the task's targets.
    """
    sequences = [task.encode(t) for t in texts]
    length = max(len(s) for s in sequences)
    ids = torch.full((len(texts), length), pad_id, dtype=torch.long)
    labels = torch.full((len(texts), length), -100, dtype=torch.long)
    for row, (text, seq) in enumerate(zip(texts, sequences)):
        ids[row, : len(seq)] = torch.tensor(seq)
        if all_positions:
            labels[row, : len(seq) - 1] = torch.tensor(seq[1:])
        for pos in task.target_positions(text):
            labels[row, pos] = seq[pos + 1]
    return ids, labels


@torch.no_grad()
def evaluate_probed(probed: ProbedModel, n: int | None = None, seed: int = 1234, batch_size: int = 2000) -> EvalResult:
    """Share of held-out inputs the probed model gets right, as its task judges (by default greedy
    exact match of every scored token).

    Args:
        n: Held-out inputs to score (default: all when they can be listed, else 2,000).
        seed: Seed of the inputs drawn when they are not all scored.
    """
    task = probed.task
    every = task.enumerate_texts() if n is None else None
    if every is not None:
        held_out = [task.is_heldout(t) for t in every]
        texts = [t for t, out in zip(every, held_out) if out]
    else:
        texts = task.sample_texts(random.Random(seed), n or 2000, split="heldout")
    if task.breakdown is None:
        right = _judged(probed, texts, batch_size)
        return EvalResult(accuracy=sum(right) / len(texts), n=len(texts))
    # Both splits in one pass, the held-out inputs first; sampled, as many training inputs as held-out.
    if every is not None:
        training = [t for t, out in zip(every, held_out) if not out]
    else:
        training = task.sample_texts(random.Random(seed), len(texts), split="train")
    right = _judged(probed, texts + training, batch_size)
    groups = _group_accuracy(task, texts + training, right)
    return EvalResult(accuracy=sum(right[: len(texts)]) / len(texts), n=len(texts), groups=groups)


def _judged(probed: ProbedModel, texts: list[str], batch_size: int) -> list[bool]:
    """Whether the probed model gets each input right, as its task judges."""
    right: list[bool] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        ids, labels = target_batch(probed.task, chunk, probed.task.tokenizer.pad_id)
        right += probed.task.judge(chunk, ids, probed.logits(ids), labels).tolist()
    return right


def _group_accuracy(task: Task, texts: list[str], right: list[bool]) -> dict[str, dict[str, float]]:
    counts: dict[str, dict[str, list[int]]] = {}
    for text, ok in zip(texts, right):
        group, column = task.evaluation_group(text)
        tally = counts.setdefault(group, {}).setdefault(column, [0, 0])
        tally[0], tally[1] = tally[0] + int(ok), tally[1] + 1
    return {g: {c: round(k / n, 4) for c, (k, n) in sorted(cols.items())} for g, cols in counts.items()}


class ProbedTraining:
    """A probed model's part in ``training.fit``: next-token loss on fresh task inputs, scored by
    held-out accuracy."""

    def __init__(self, probed: ProbedModel, config: ProbedTrainConfig, streams: RandomStreams) -> None:
        self.probed, self.config, self.streams, self.model = probed, config, streams, probed.model
        self.trained = self.model  # ``fit`` wraps it for a run on several processes
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98)
        )
        self.accuracy: float | None = None
        self.last_loss = 0.0

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, str]]:
        task, config, device = self.probed.task, self.config, self.probed.device
        texts = task.sample_texts(self.streams.data, config.batch_size)
        ids, labels = target_batch(task, texts, task.tokenizer.pad_id, config.full_sequence_loss)
        logits = self.trained(input_ids=ids.to(device), use_cache=False).logits
        loss = F.cross_entropy(logits.flatten(0, 1), labels.to(device).flatten(), ignore_index=-100)
        self.last_loss = loss.item()
        shown = {"loss": f"{self.last_loss:.4f}"}
        return loss, shown if self.accuracy is None else {**shown, "acc": f"{self.accuracy:.3f}"}

    def evaluate(self, step: int, scheduled: bool) -> dict:
        self.accuracy = evaluate_probed(self.probed, self.config.eval_size).accuracy
        log.info("step %d loss %.4f held-out accuracy %.4f", step, self.last_loss, self.accuracy)
        done = self.config.stop_at_accuracy is not None and self.accuracy >= self.config.stop_at_accuracy
        return {"loss": self.last_loss, "accuracy": self.accuracy, **({"done": True} if done else {})}

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        history = state.get("history", [])
        self.accuracy = history[-1]["accuracy"] if history else None

    def save(self, run: Run) -> None:
        """The model is written once, at the end (``train_probed``); checkpoints hold the rest."""


def train_probed(
    config: ProbedTrainConfig,
    out: str | Path,
    *,
    progress: bool = True,
    device: str | None = None,
    stop: threading.Event | None = None,
) -> ProbedModel:
    """Train (or resume) a probed model into ``out`` (on ``device``, default ``"auto"``) and save the
    final model there. Setting ``stop`` ends the run after its current step, saved.

    A resumed run keeps the recipe it was started with; only ``steps`` comes from ``config``.
    """
    out = Path(out)
    check_run(out, config.steps)
    if (saved := saved_config(out)) is not None:
        config = replace(ProbedTrainConfig(**saved), steps=config.steps)
    task = get_task(config.task)
    streams = RandomStreams.seeded(config.seed)
    model = new_gpt2(task, d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads, seed=config.seed)
    model.to(resolve_device(device))  # before the optimizer, whose state follows the weights
    probed = ProbedModel(model, task, content_hash="", source=str(out))
    job = ProbedTraining(probed, config, streams)
    ranks = join()
    loop = {"config": asdict(config), "desc": "train-probed", "progress": progress, "stop": stop, "ranks": ranks}
    try:
        run = fit(job, out, LoopSettings.of(config), streams, **loop)
    finally:
        leave(ranks)
    if not ranks.main:
        return probed  # rank 0 writes the model
    provenance = {
        "recipe": asdict(config),
        "steps": run.step,
        "seconds": round(run.seconds, 1),
        "final_heldout_accuracy": job.accuracy,
        "history": run.history,
    }
    probed.save(out, provenance)
    return probed
