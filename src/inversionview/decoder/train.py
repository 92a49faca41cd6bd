"""Training a decoder on the fly: fresh task inputs, their activations at random sites and
positions, and the decoder taught to write the whole input back.

The loop itself is ``training.fit``, shared with the probed model's trainer; what is specific to
decoders is here: the recipe a resumed run keeps, the loss (with the optional reward toward
precision), and the evaluation that re-weights sites and named positions toward the weakest.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm import tqdm

from inversionview.decoder.build import decoder_sites, is_decoder_directory, new_decoder, site_scales
from inversionview.decoder.config import (
    BUDGET_STEP_BOUND,
    DEFAULT_BATCH_SIZE,
    DEFAULT_STEPS,
    GPU_BATCH_SIZE,
    DecoderTrainConfig,
)
from inversionview.decoder.evaluate import (
    DecoderPrecision,
    heldout_queries,
    precision_verdict,
    query_position_name,
    query_precisions,
)
from inversionview.decoder.model import Decoder
from inversionview.decoder.reward import reward_loss
from inversionview.decoder.store import built_decoder, save_decoder, saved_decoder_config
from inversionview.decoder.stream import ActivationStream, parse_position_mode
from inversionview.distributed import ONE_PROCESS, Ranks, fingerprint, join, leave
from inversionview.errors import UserError
from inversionview.probed.distance import EpsilonBall
from inversionview.probed.model import ProbedModel
from inversionview.storage import DECODER_CONFIG_FILE, HISTORY_FILE, read_json, write_json
from inversionview.training import LoopSettings, RandomStreams, Run, check_run, fit, saved_config

log = logging.getLogger(__name__)

__all__ = ["DecoderTrainConfig", "read_run_summary", "train_decoder"]


class DecoderTraining:
    """A decoder's part in ``training.fit``: its loss, its evaluation, and what it saves."""

    def __init__(
        self,
        probed: ProbedModel,
        config: DecoderTrainConfig,
        decoder: Decoder,
        streams: RandomStreams,
        out: Path,
        ranks: Ranks = ONE_PROCESS,
    ) -> None:
        self.probed, self.config, self.model, self.streams, self.out = probed, config, decoder, streams, out
        self.trained, self.ranks, self.data_fingerprint = decoder, ranks, ""
        self.optimizer = torch.optim.AdamW(
            decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98)
        )
        self.sites = decoder_sites(probed, decoder.config.sites)
        self.stream = ActivationStream(probed, self.sites, config, streams.data)
        self.metric, self.epsilon = probed.distance_settings(config.metric, config.epsilon)
        self.samples_seen, self.tokens_covered = 0, False
        self.reconstruction = self.verified_share = None
        position_names = probed.task.query_position_names()
        # Enough queries that every named position is measured (addition names 13).
        count = max(config.eval_queries, len(position_names))
        self.eval_queries = heldout_queries(probed, count, seed=config.seed + 1)
        self.eval_names = [query_position_name(probed, text, position) for text, position in self.eval_queries]
        self.evaluations = 0
        self.site_precision = torch.full((len(self.sites),), float("nan"))

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, str]]:
        inputs, activation, site_ids, targets, weights = self.stream.batch(self.streams.torch).to(self.probed.device)
        self.data_fingerprint = self.data_fingerprint or fingerprint(inputs)  # the first batch's
        self.reconstruction = self.trained(inputs, activation, site_ids, targets, weights)
        loss = self.reconstruction
        if self.config.verified_queries:
            n = self.config.verified_queries
            reward, self.verified_share = reward_loss(
                self.model,
                self.probed,
                self.sites,
                activation[:n],
                site_ids[:n],
                samples=self.config.verified_samples,
                epsilon=self.epsilon,
                metric=self.metric,
                generator=self.streams.torch,
            )
            loss = loss + reward
        self.samples_seen += inputs.shape[0] * self.ranks.world
        return loss, {"loss": f"{self.reconstruction.item():.3f}"}

    def _measured_sites(self) -> list[int]:
        """The sites this evaluation measures: all of them, or the next ``eval_sites`` in turn."""
        n, bound = len(self.sites), max(1, self.config.eval_sites)
        if n <= bound:
            return list(range(n))
        start = self.evaluations * bound % n
        self.evaluations += 1
        return [(start + i) % n for i in range(bound)]

    def _precisions(self, step: int, measured: list[int]) -> torch.Tensor:
        """Each measured site's precision on each held-out query: (measured sites, queries)."""
        options = {"samples_per_query": self.config.eval_samples, "ball": EpsilonBall(self.metric, self.epsilon)}
        shown = tqdm(measured, desc="evaluating", unit="site", leave=False, disable=None)  # None: only on a terminal
        queries = self.eval_queries
        return torch.stack(
            [query_precisions(self.model, self.probed, self.sites[i], queries, seed=step, **options) for i in shown]
        )

    def _reweight(self, per_query: torch.Tensor, measured: list[int], by_position: dict[str, float]) -> None:
        """Shift training toward the sites, and the named positions, that the decoder reads worst."""
        floor = self.config.site_weight_floor
        self.site_precision[measured] = per_query.mean(-1)
        known = self.site_precision[~self.site_precision.isnan()]
        self.stream.site_weights = 1.0 - self.site_precision.nan_to_num(float(known.mean())) + floor
        if by_position:
            names = self.probed.task.query_position_names()
            mean_weakness = 1.0 - sum(by_position.values()) / len(by_position)
            weakness = [1.0 - by_position[n] if n in by_position else mean_weakness for n in names]
            self.stream.position_weights = torch.tensor(weakness) + floor

    def evaluate(self, step: int, scheduled: bool) -> dict:
        measured = self._measured_sites()
        per_query = self._precisions(step, measured)
        precision = {self.sites[i].name: float(row.mean()) for i, row in zip(measured, per_query)}
        names = self.probed.task.query_position_names()
        by_position = {
            name: float(per_query[:, [n == name for n in self.eval_names]].mean())
            for name in names
            if name in self.eval_names
        }
        if scheduled:  # a run stopped between evaluations trains on as if it had not been stopped
            self._reweight(per_query, measured, by_position)
        measured_precision = DecoderPrecision(precision, per_query, self.eval_queries)
        mean, error = measured_precision.mean, measured_precision.standard_error
        loss = self.reconstruction.item()
        sites = " ".join(f"{k.replace('blocks.', '')}={v:.2f}" for k, v in precision.items())
        log.info("step %d loss %.3f mean precision %.3f %s", step, loss, mean, sites)
        return {
            "threads": torch.get_num_threads(),
            "device": self.probed.device.type,
            "batch_size": self.config.batch_size,
            "global_batch": self.config.batch_size * self.ranks.world,
            "samples_seen": self.samples_seen,
            "loss": round(loss, 4),
            **({} if self.verified_share is None else {"verified_share": round(self.verified_share, 4)}),
            "mean_precision": round(mean, 4),
            "queries": len(self.eval_queries),
            "precision_se": None if math.isnan(error) else round(error, 4),  # NaN: a single query
            **({"sites_measured": len(measured)} if len(measured) < len(self.sites) else {}),
            "precision": {k: round(v, 4) for k, v in precision.items()},
            **({"position_precision": {k: round(v, 4) for k, v in by_position.items()}} if by_position else {}),
        }

    def state(self) -> dict:
        return {
            "samples_seen": self.samples_seen,
            "site_weights": self.stream.site_weights.tolist(),
            "position_weights": self.stream.position_weights.tolist(),
            "pending_inputs": self.stream.pending,  # drawn but not yet trained on: a resume takes them first
            "evaluations": self.evaluations,
            "site_precision": [None if p != p else p for p in self.site_precision.tolist()],  # NaN: not yet measured
        }

    def restore(self, state: dict) -> None:
        self.samples_seen = state.get("samples_seen", 0)
        self.stream.site_weights = torch.tensor(state["site_weights"])
        self.evaluations = state.get("evaluations", 0)
        if len(state.get("site_precision", ())) == len(self.sites):  # older runs saved none
            self.site_precision = torch.tensor([float("nan") if p is None else p for p in state["site_precision"]])
        if len(state.get("position_weights", ())) == len(self.stream.position_weights):  # older runs saved none
            self.stream.position_weights = torch.tensor(state["position_weights"])
        if self.ranks.main:  # the inputs rank 0 drew; another rank draws its own
            self.stream.take_pending(state.get("pending_inputs", []))
        if not self.tokens_covered:
            self._cover_corpus_tokens()

    def _cover_corpus_tokens(self) -> None:
        """A run resumed on a corpus with tokens its decoder does not write (the file was edited, or
        ``--max-tokens`` changed where lines are split) writes those too from now on."""
        self.tokens_covered = True
        tokens = self.probed.task.training_tokens()
        if not self.model.config.corpus_tokens or tokens is None:
            return
        written = set(self.model.writable.nonzero()[:, 0].tolist())
        if new := tokens - written:
            log.warning("the corpus has %d token(s) this run's decoder did not write; it writes them too now", len(new))
            self.model.restrict_vocabulary(sorted(written | new))

    def save(self, run: Run) -> None:
        provenance = {
            "recipe": asdict(self.config),
            "steps": run.step,
            "seconds": round(run.seconds, 1),
            "history": run.history,
        }
        save_decoder(self.model, self.out, self.probed, provenance)
        write_json(self.out / HISTORY_FILE, run_summary(run, self.samples_seen))


def run_summary(run: Run, samples: int) -> dict:
    """What a run has reached, for ``history.json``: its last evaluation's precision (mean, its
    standard error over queries and the lowest site, on ``queries`` held-out queries a site), its
    steps, samples and seconds, and every evaluation."""
    evaluated = [record for record in run.history if "mean_precision" in record]
    last = evaluated[-1] if evaluated else {}
    by_site = last.get("precision", {})
    lowest = min(by_site, key=by_site.get) if by_site else None
    return {
        "precision": last.get("mean_precision"),
        "lowest_site": None if lowest is None else {"site": lowest, "precision": by_site[lowest]},
        "queries": last.get("queries"),
        "precision_se": last.get("precision_se"),
        "steps": run.step,
        "samples": samples,
        "seconds": round(run.seconds, 1),
        "history": run.history,
    }


def read_run_summary(out: str | Path) -> dict:
    """The ``history.json`` of a run in ``out`` (``run_summary``)."""
    return read_json(Path(out) / HISTORY_FILE, "training history")


def _planned_length(config: DecoderTrainConfig, kept: DecoderTrainConfig | None) -> DecoderTrainConfig:
    """``config`` with its length settled: the ``steps`` or ``minutes`` it gives; on a resume that
    gives neither, the run's own plan (``kept``); else ``DEFAULT_STEPS``."""
    if config.steps is not None and config.minutes is not None:
        raise UserError("give `steps` or `minutes`, not both: a run is planned by one of them")
    if config.steps is None and config.minutes is None and kept is not None:
        config = replace(config, steps=kept.steps, minutes=kept.minutes)
    if config.minutes is not None:
        return replace(config, steps=BUDGET_STEP_BOUND)
    return replace(config, steps=DEFAULT_STEPS if config.steps is None else config.steps)


def resolved_config(
    probed: ProbedModel, config: DecoderTrainConfig, out: Path, saved: dict | None
) -> DecoderTrainConfig:
    """The recipe a run in ``out`` trains with, checked: a resumed run keeps the one it started with
    (``saved``, from its checkpoint), and only its length (``steps`` or ``minutes``; neither keeps
    the run's own plan), ``max_seconds`` and a ``batch_size`` that is set come from ``config``."""
    kept = None if saved is None else DecoderTrainConfig.from_saved(saved)
    if config.minutes is not None:
        config.check()  # a bad budget is named before anything else
    config = _planned_length(config, kept)
    check_run(out, config.steps)
    if kept is not None:
        batch_size = kept.batch_size if config.batch_size is None else config.batch_size
        length = {"steps": config.steps, "minutes": config.minutes}
        config = replace(kept, **length, max_seconds=config.max_seconds, batch_size=batch_size)
        trained_for = read_json(out / DECODER_CONFIG_FILE, "decoder config").get("probed_hash")
        if trained_for != probed.content_hash:
            raise UserError(
                f"{out} holds a run for another probed model; resume it with that model or pick a new `out`"
            )
    pretrained = config.init_from is not None and not is_decoder_directory(config.init_from)
    config = config.for_vocabulary(probed.task.tokenizer.vocab_size, pretrained)  # a resumed run's are all set
    if config.batch_size is None:
        on_gpu = config.minutes is not None and probed.device.type == "cuda"
        config = replace(config, batch_size=GPU_BATCH_SIZE if on_gpu else DEFAULT_BATCH_SIZE)
    parse_position_mode(config.positions, probed)  # a bad mode fails before any work
    config.check()
    return config


def train_decoder(
    probed: ProbedModel,
    config: DecoderTrainConfig,
    out: str | Path,
    *,
    progress: bool = True,
    stop: threading.Event | None = None,
    started_at: float | None = None,
) -> Decoder:
    """Train (or resume) a decoder for ``probed`` into ``out``; saves the decoder there at every
    checkpoint and at the end.

    Setting ``stop`` (from another thread, or ``training.stop_requests`` on Ctrl-C) ends the run
    after its current step, evaluated and saved like a finished one. A resumed run keeps the recipe
    it was started with (``resolved_config``), so a run can be extended, on another machine too.
    A budgeted run (``config.minutes``) counts its time from ``started_at`` (``time.monotonic()``;
    default: now), so that a command's start-up is inside the budget.
    """
    out = Path(out)
    saved = saved_config(out)
    resuming = saved is not None
    config = resolved_config(probed, config, out, saved)
    ranks = join()
    if ranks.active and config.verified_queries:
        raise UserError("`verified_queries` trains in one process; run it without torchrun")
    streams = RandomStreams.seeded(config.seed)
    # A resumed run rebuilds the decoder it saved, whose weights then come from the checkpoint; where
    # a new run's weights start (--init-from) matters no more, and may be gone.
    decoder = built_decoder(saved_decoder_config(out), probed) if resuming else new_decoder(probed, **config.shape())
    decoder = decoder.to(probed.device)  # before the optimizer, whose state follows the weights
    # The recipe records the shape that was built, which an --init-from source decides.
    built = {k: v for k, v in asdict(decoder.config).items() if k in config.shape()}
    config = replace(config, **built)
    job = DecoderTraining(probed, config, decoder, streams, out, ranks)
    if not resuming and not is_decoder_directory(config.init_from):  # a trained decoder brings its own scales
        decoder.condition.site_scale.copy_(site_scales(probed, job.sites, streams.data))
    if ranks.active:
        log.warning(
            "rank %d of %d (%s): global batch %d",
            ranks.rank,
            ranks.world,
            ranks.backend,
            config.batch_size * ranks.world,
        )
    loop = {"config": asdict(config), "desc": "train-decoder", "progress": progress, "stop": stop, "ranks": ranks}
    loop["started_at"] = started_at
    try:
        run = fit(job, out, LoopSettings.of(config), streams, **loop)
    finally:
        leave(ranks)
    if run.history and ranks.main:
        mean = run.history[-1]["mean_precision"]
        verdict = f"mean precision {100 * mean:.1f}% at step {run.step}: {precision_verdict(mean)}"
        log.info(verdict)
        if progress and not log.isEnabledFor(logging.INFO):  # from Python, where no log is shown
            tqdm.write(verdict, file=sys.stderr)
    return decoder
