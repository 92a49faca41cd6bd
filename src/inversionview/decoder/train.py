"""Training a decoder on the fly: fresh task inputs, their activations at random sites and
positions, and the decoder taught to write the whole input back."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from inversionview.decoder.evaluate import heldout_queries, query_precisions
from inversionview.decoder.model import Decoder, DecoderConfig, next_token_targets
from inversionview.decoder.store import continued_decoder, save_decoder
from inversionview.decoder.verified import verified_loss
from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site, canonical_site
from inversionview.storage import DECODER_CONFIG_FILE, read_json
from inversionview.training import (
    Checkpoint,
    check_run,
    load_checkpoint,
    lr_at,
    progress_interval,
    save_checkpoint,
    saved_config,
    seed_everything,
)

log = logging.getLogger(__name__)


DEFAULT_BATCH_SIZE = 128


@dataclass
class DecoderTrainConfig:
    """How to train a decoder. The defaults are the bundled counting decoder's recipe."""

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    n_condition_layers: int = 2
    occurrences: bool = False
    """Give the decoder each token's occurrence number (``decoder/model.py``)."""
    steps: int = 100_000
    batch_size: int | None = None
    """Training examples a step; None means 128 for a new run and, on resume, the run's own size.
    A resumed run may change it (a GPU takes a far larger batch than a CPU core at the same speed)."""
    lr: float = 2e-3
    warmup: int = 500
    weight_decay: float = 0.01
    bos_share: float = 0.05
    positions: str = "mixed"
    """Where queries sit: "mixed" (a `named_share` at the task's positions of interest, the rest
    uniform over text tokens), "random" (uniform), "last" (the last text token), "named" (only the
    positions of interest), or "attention:L.H" (tokens where head H of layer L attends away from BOS,
    as in factual-recall studies). A `bos_share` always sits at BOS."""
    named_share: float = 0.5
    """With "mixed": share of queries at the task's named positions of interest (counting: query letter, ':')."""
    queries_per_input: int = 2
    """Training examples drawn from each probed-model forward pass (different sites and positions)."""
    seed: int = 0
    eval_every: int = 2000
    eval_queries: int = 8
    eval_samples: int = 16
    epsilon: float | None = None
    metric: str | None = None
    """Precision is measured with these; None takes the probed model's defaults."""
    checkpoint_every_s: float = 180.0
    site_weight_floor: float = 0.2
    """Added to each site's (and named position's) weakness, 1 - precision, to give its sampling
    weight: every site and position keeps being trained."""
    init_from: str | None = None
    """Where the decoder's first weights come from: a local Hugging Face GPT-2 directory (same
    vocabulary), or a decoder directory trained for this probed model, whose shape the new run takes."""
    max_seconds: float | None = None
    """Stop (evaluating and saving first) once the run has trained this long, resumed time included."""
    verified_queries: int = 0
    """Queries a step (taken from the step's batch) whose decoder samples the probed model verifies;
    samples inside ε are made more likely, those outside less (``decoder/verified.py``). 0: none.
    Meant for fine-tuning a trained decoder toward precision (with ``init_from`` that decoder)."""
    verified_samples: int = 8
    """Samples drawn for each verified query; their mean reward is the baseline."""


def decoder_sites(probed: ProbedModel) -> list[Site]:
    """The sites one decoder serves: every site, aliases counted once."""
    seen: list[Site] = []
    for site in probed.sites():
        if canonical_site(site) not in seen:
            seen.append(canonical_site(site))
    return seen


def starts_from_a_decoder(config: DecoderTrainConfig) -> bool:
    """Whether ``init_from`` names a trained decoder (rather than a pretrained LM, or nothing)."""
    return config.init_from is not None and (Path(config.init_from) / DECODER_CONFIG_FILE).is_file()


def new_decoder(probed: ProbedModel, config: DecoderTrainConfig) -> Decoder:
    """The decoder a new run starts from: an earlier decoder (``init_from`` a decoder directory),
    a pretrained LM (``init_from`` a GPT-2 directory), or one with the token and position embeddings
    of the probed model."""
    sites = decoder_sites(probed)
    if starts_from_a_decoder(config):
        return continued_decoder(
            config.init_from,
            probed,
            n_layers=config.n_layers,
            n_condition_layers=config.n_condition_layers,
            occurrences=config.occurrences,
        )
    if config.init_from is not None:
        from inversionview.decoder.pretrained import pretrained_decoder

        return pretrained_decoder(config.init_from, probed, [s.name for s in sites], config.n_condition_layers)
    decoder = Decoder(
        DecoderConfig(
            vocab_size=probed.task.tokenizer.vocab_size,
            max_len=probed.task.max_len,
            d_activation=probed.d_model,
            sites=[s.name for s in sites],
            d_model=config.d_model,
            n_layers=config.n_layers,
            n_heads=config.n_heads,
            n_condition_layers=config.n_condition_layers,
            occurrences=config.occurrences,
        )
    )
    # The probed model already knows which tokens and positions are alike; start from that.
    width = min(config.d_model, probed.d_model)
    with torch.no_grad():
        wte = probed.model.get_input_embeddings().weight.float().cpu()
        decoder.token_embedding.weight[: wte.shape[0], :width] = wte[: decoder.config.vocab_size, :width]
        wpe = getattr(getattr(probed.model, "transformer", None), "wpe", None)  # learned positions (GPT-2)
        if wpe is not None:
            decoder.position_embedding.weight[:, :width] = wpe.weight[: decoder.config.max_len, :width].cpu()
    return decoder


def parse_position_mode(mode: str, probed: ProbedModel) -> tuple[str, tuple[int, int] | None]:
    """("mixed" | "random" | "last" | "named" | "attention", (layer, head) for "attention:L.H")."""
    if mode in ("mixed", "random", "last", "named"):
        return mode, None
    layer_head = mode.removeprefix("attention:").split(".")
    if mode.startswith("attention:") and len(layer_head) == 2 and all(p.isdigit() for p in layer_head):
        layer, head = int(layer_head[0]), int(layer_head[1])
        if layer < probed.n_layers and head < probed.n_heads:
            return "attention", (layer, head)
    raise UserError(
        f"--positions {mode!r}: use mixed, random, last, named or attention:LAYER.HEAD "
        f"(layers 0-{probed.n_layers - 1}, heads 0-{probed.n_heads - 1})"
    )


class ActivationStream:
    """Endless training batches: (decoder input ids, activation, site id, target ids)."""

    def __init__(self, probed: ProbedModel, sites: list[Site], config: DecoderTrainConfig, rng) -> None:
        self.probed, self.sites, self.config, self.rng = probed, sites, config, rng
        self.site_weights = torch.ones(len(sites))
        self.position_weights = torch.ones(len(probed.task.query_position_names()))
        """Sampling weight of each named position (``task.query_position_names()`` order)."""
        self._pending: list[list[str]] = []

    def _texts(self) -> list[str]:
        """The next batch's inputs. Inputs are drawn a pool at a time and sorted by length, so that a
        batch holds inputs of similar length and little of its compute goes to padding."""
        per_batch = -(-self.config.batch_size // self.config.queries_per_input)
        if not self._pending:
            pool = sorted(self.probed.task.sample_texts(self.rng, per_batch * self.pool_batches), key=len)
            self._pending = [pool[i : i + per_batch] for i in range(0, len(pool), per_batch)]
            self.rng.shuffle(self._pending)
        return self._pending.pop()

    pool_batches = 16

    def _named_positions(self, texts: list[str], source: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """For each query (its text ``source``), one of its text's named positions, drawn by
        ``position_weights`` (inverse CDF of ``uniform`` (B,)): (B,)."""
        names = self.probed.task.query_position_names()
        choices = []  # per text: (positions, cumulative weights) of the named positions it has
        for text in texts:
            named = self.probed.task.named_positions(text)
            present = [k for k, name in enumerate(names) if name in named]
            weights = self.position_weights[present]
            choices.append(([named[names[k]] for k in present], (weights / weights.sum()).cumsum(0)))
        picked = []
        for i, u in zip(source.tolist(), uniform.tolist()):
            positions, cumulative = choices[i]
            picked.append(positions[min(int(torch.searchsorted(cumulative, u)), len(positions) - 1)])
        return torch.tensor(picked)

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        probed, config = self.probed, self.config
        task = probed.task
        per_input = config.queries_per_input
        texts = self._texts()
        ids, lengths = probed.encode_batch(texts)
        mode, head = parse_position_mode(config.positions, probed)
        acts, patterns = probed.activations(ids, self.sites, attention_layers=(head[0],) if head else ())
        stacked = torch.stack([acts[s] for s in self.sites])  # (S, n_texts, T, d)
        source = torch.arange(len(texts)).repeat_interleave(per_input)[: config.batch_size]  # (B,) text of each
        batch = source.shape[0]
        site_ids = torch.multinomial(self.site_weights, batch, replacement=True, generator=generator)
        # Text tokens are positions 1 .. length-2 (BOS first, EOS last).
        positions = 1 + (torch.rand(batch, generator=generator) * (lengths[source] - 2)).long()
        if mode == "last":
            positions = lengths[source] - 2
        elif mode in ("named", "mixed") and task.query_position_names():
            named = self._named_positions(texts, source, torch.rand(batch, generator=generator))
            use_named = torch.rand(batch, generator=generator) < (1.0 if mode == "named" else config.named_share)
            positions = torch.where(use_named, named, positions)
        elif mode == "attention":
            # Weight on BOS below one half: the head reads something from the input there.
            to_bos = patterns[head[0]][:, head[1], :, 0]  # (n_texts, T)
            text_token = torch.arange(ids.shape[1])[None, :].ge(1) & torch.arange(ids.shape[1])[None, :].lt(
                (lengths - 1)[:, None]
            )
            away = (to_bos < 0.5) & text_token
            scores = torch.rand(batch, ids.shape[1], generator=generator).masked_fill(~away[source], -1.0)
            positions = torch.where(away[source].any(-1), scores.argmax(-1), positions)
        at_bos = torch.rand(batch, generator=generator) < config.bos_share
        positions = torch.where(at_bos, torch.zeros_like(positions), positions)
        activation = stacked[site_ids, source, positions].float()  # (B, d), float32 whatever the model's dtype
        ids, lengths = ids[source], lengths[source]
        return ids[:, :-1], activation, site_ids, next_token_targets(ids, lengths)


def train_decoder(
    probed: ProbedModel,
    config: DecoderTrainConfig,
    out: Path,
    *,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> Decoder:
    """Train (or resume) a decoder for ``probed`` into ``out``; saves the final decoder there.

    Setting ``stop`` (from another thread, or ``training.stop_requests`` on Ctrl-C) ends the run
    after its current step, evaluated and saved like a finished one.

    A resumed run keeps the recipe it was started with; only ``steps``, ``max_seconds`` and a
    ``batch_size`` that is set come from ``config``, so a run can be extended, on another machine too.
    """
    check_run(out, config.steps)
    if config.batch_size is not None and config.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {config.batch_size}")
    if (saved := saved_config(out)) is not None:
        kept = DecoderTrainConfig(**saved)
        config = replace(
            kept,
            steps=config.steps,
            max_seconds=config.max_seconds,
            batch_size=config.batch_size or kept.batch_size,
        )
        trained_for = read_json(out / DECODER_CONFIG_FILE, "decoder config").get("probed_hash")
        if trained_for != probed.content_hash:
            raise UserError(
                f"{out} holds a run for another probed model; resume it with that model or pick a new --out"
            )
    config = replace(config, batch_size=config.batch_size or DEFAULT_BATCH_SIZE)
    parse_position_mode(config.positions, probed)  # a bad mode fails before any work
    if config.eval_every < 1:
        raise UserError(f"--eval-every must be at least 1, got {config.eval_every}")
    if config.n_layers < 1 or config.n_condition_layers < 0:
        raise UserError(
            f"--n-layers must be at least 1 and --condition-layers at least 0, "
            f"got {config.n_layers} and {config.n_condition_layers}"
        )
    if config.init_from is None and (config.d_model < 1 or config.d_model % config.n_heads):
        raise UserError(f"--d-model must be a positive multiple of the {config.n_heads} heads, got {config.d_model}")
    if config.site_weight_floor <= 0:  # a floor of 0 would stop training a site once it reads perfectly
        raise UserError(f"--site-weight-floor must be above 0, got {config.site_weight_floor}")
    if not 0 <= config.verified_queries <= config.batch_size or config.verified_samples < 2:
        raise UserError(
            f"--verified-queries must be between 0 and the batch size ({config.batch_size}), "
            f"and --verified-samples at least 2 (a query's samples are its own baseline)"
        )
    rng = seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    sites = decoder_sites(probed)
    decoder = new_decoder(probed, config).to(probed.device)  # the optimizer's state follows it there
    # The recipe records the shape that was built, which an --init-from source decides.
    shape = decoder.config
    config = replace(
        config,
        d_model=shape.d_model,
        n_layers=shape.n_layers,
        n_heads=shape.n_heads,
        n_condition_layers=shape.n_condition_layers,
        occurrences=shape.occurrences,
    )
    optimizer = torch.optim.AdamW(
        decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98)
    )
    stream = ActivationStream(probed, sites, config, rng)

    resumed = load_checkpoint(out, decoder, optimizer)
    if resumed:
        step, state = resumed.step, resumed.state
        rng.seed(config.seed + step)  # a fresh but reproducible data stream after a resume
        generator.manual_seed(config.seed + step)
        stream.site_weights = torch.tensor(state["site_weights"])
        if len(state.get("position_weights", ())) == len(stream.position_weights):  # older runs saved none: uniform
            stream.position_weights = torch.tensor(state["position_weights"])
        log.info("resuming at step %d", step)
    else:
        step, state = 0, {"seconds": 0.0, "history": [], "samples_seen": 0}
        if not starts_from_a_decoder(config):  # a trained decoder brings the scales it was trained with
            decoder.condition.site_scale.copy_(_site_scales(probed, sites, rng))

    position_names = probed.task.query_position_names()
    # Enough queries that every named position is measured (addition names 13).
    eval_queries = heldout_queries(probed, max(config.eval_queries, len(position_names)), seed=config.seed + 1)
    eval_names = [query_position_name(probed, text, position) for text, position in eval_queries]
    epsilon = probed.default_epsilon if config.epsilon is None else config.epsilon
    metric = config.metric or probed.default_metric
    verified_share = None
    started = time.monotonic() - state["seconds"]
    last_checkpoint = time.monotonic()
    bar = tqdm(
        total=config.steps,
        initial=step,
        disable=not progress,
        mininterval=progress_interval(),
        desc="train-decoder",
        unit="step",
    )
    while step < config.steps:
        decoder.train()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, peak=config.lr, warmup=config.warmup, total=config.steps)
        inputs, activation, site_ids, targets = (t.to(probed.device) for t in stream.batch(generator))
        logits = decoder(inputs, activation, site_ids)
        loss = reconstruction = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        if config.verified_queries:
            n = config.verified_queries
            reward_loss, verified_share = verified_loss(
                decoder,
                probed,
                sites,
                activation[:n],
                site_ids[:n],
                samples=config.verified_samples,
                epsilon=epsilon,
                metric=metric,
                generator=generator,
            )
            loss = loss + reward_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        optimizer.step()
        step += 1
        state["samples_seen"] += inputs.shape[0]
        bar.update(1)
        bar.set_postfix(loss=f"{reconstruction.item():.3f}", refresh=False)

        out_of_time = config.max_seconds is not None and time.monotonic() - started >= config.max_seconds
        final = step == config.steps or out_of_time or (stop is not None and stop.is_set())
        if step % config.eval_every == 0 or final:
            decoder.eval()
            per_query = torch.stack(
                [
                    query_precisions(
                        decoder,
                        probed,
                        site,
                        eval_queries,
                        samples_per_query=config.eval_samples,
                        epsilon=epsilon,
                        metric=metric,
                        seed=step,
                    )
                    for site in sites
                ]
            )  # (sites, queries)
            precision = {site.name: float(row.mean()) for site, row in zip(sites, per_query)}
            by_position = {
                name: float(per_query[:, [n == name for n in eval_names]].mean())
                for name in position_names
                if name in eval_names
            }
            # Shift training toward the sites, and the named positions, that the decoder reads worst.
            stream.site_weights = 1.0 - per_query.mean(-1) + config.site_weight_floor
            if by_position:
                mean_weakness = 1.0 - sum(by_position.values()) / len(by_position)
                stream.position_weights = (
                    torch.tensor([1.0 - by_position[n] if n in by_position else mean_weakness for n in position_names])
                    + config.site_weight_floor
                )
            mean = sum(precision.values()) / len(precision)
            state["history"].append(
                {
                    "step": step,
                    "seconds": round(time.monotonic() - started, 1),
                    "threads": torch.get_num_threads(),
                    "device": probed.device.type,
                    "batch_size": config.batch_size,
                    "samples_seen": state["samples_seen"],
                    "loss": round(reconstruction.item(), 4),
                    **({} if verified_share is None else {"verified_share": round(verified_share, 4)}),
                    "mean_precision": round(mean, 4),
                    "precision": {k: round(v, 4) for k, v in precision.items()},
                    **({"position_precision": {k: round(v, 4) for k, v in by_position.items()}} if by_position else {}),
                }
            )
            log.info(
                "step %d loss %.3f mean precision %.3f %s",
                step,
                reconstruction.item(),
                mean,
                " ".join(f"{k.replace('blocks.', '')}={v:.2f}" for k, v in precision.items()),
            )
        if final or time.monotonic() - last_checkpoint > config.checkpoint_every_s:
            state["seconds"] = time.monotonic() - started
            state["site_weights"] = stream.site_weights.tolist()
            state["position_weights"] = stream.position_weights.tolist()
            state["config"] = asdict(config)
            save_checkpoint(out, decoder, optimizer, Checkpoint(step, state))
            save_decoder(
                decoder,
                out,
                probed,
                {
                    "recipe": asdict(config),
                    "steps": step,
                    "seconds": round(state["seconds"], 1),
                    "history": state["history"],
                },
            )
            last_checkpoint = time.monotonic()
        if final:
            break
    bar.close()
    decoder.eval()
    return decoder


def query_position_name(probed: ProbedModel, text: str, position: int) -> str | None:
    """The name of ``text``'s named position ``position`` (None if it has no name)."""
    return next((name for name, at in probed.task.named_positions(text).items() if at == position), None)


@torch.no_grad()
def _site_scales(probed: ProbedModel, sites: list[Site], rng, n: int = 256) -> torch.Tensor:
    """RMS of each site's activations over text positions of ``n`` training inputs."""
    ids, lengths = probed.encode_batch(probed.task.sample_texts(rng, n))
    acts, _ = probed.activations(ids, sites)
    mask = torch.arange(ids.shape[1])[None, :] < (lengths - 1)[:, None]
    return torch.stack([acts[s][mask].pow(2).mean().sqrt() for s in sites]).clamp_min(1e-6)
