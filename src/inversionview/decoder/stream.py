"""The decoder's training data: fresh task inputs, run through the probed model, read at random
sites and positions, streamed batch after batch."""

from __future__ import annotations

import random
from typing import NamedTuple

import torch

from inversionview.decoder.config import DecoderTrainConfig
from inversionview.decoder.model import next_token_targets
from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site
from inversionview.tasks import before_eos


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
        f"`positions` {mode!r}: use mixed, random, last, named or attention:LAYER.HEAD "
        f"(layers 0-{probed.n_layers - 1}, heads 0-{probed.n_heads - 1})"
    )


class TrainingBatch(NamedTuple):
    """One step's training examples."""

    inputs: torch.Tensor
    """(B, T-1) token ids the decoder reads, BOS first."""
    activation: torch.Tensor
    """(B, d) the query activation of each example."""
    site_ids: torch.Tensor
    """(B,) its site, as an index into the decoder's sites."""
    targets: torch.Tensor
    """(B, T-1) the next token at each input position, -100 where there is none."""
    weights: torch.Tensor
    """(B, T-1) each target's loss weight (``DecoderTrainConfig.query_weight`` on the tokens the activation reads)."""

    def to(self, device: torch.device) -> TrainingBatch:
        return TrainingBatch(*(t.to(device) for t in self))


class ActivationStream:
    """Endless training batches (``TrainingBatch``: decoder inputs, activations, sites, targets and
    their loss weights).

    ``site_weights`` and ``position_weights`` set how often each site and each named position is
    drawn; training moves them toward what the decoder reads worst."""

    pool_batches = 16

    def __init__(self, probed: ProbedModel, sites: list[Site], config: DecoderTrainConfig, rng: random.Random) -> None:
        self.probed, self.sites, self.config, self.rng = probed, sites, config, rng
        parse_position_mode(config.positions, probed)  # a bad mode fails here, before any batch
        self.site_weights = torch.ones(len(sites))
        self.position_weights = torch.ones(len(probed.task.query_position_names()))
        """Sampling weight of each named position (``task.query_position_names()`` order)."""
        self.pending: list[list[str]] = []
        """Batches of inputs drawn with the pool but not yet used, last first."""

    @property
    def texts_per_batch(self) -> int:
        return -(-self.config.batch_size // self.config.queries_per_input)

    def take_pending(self, pending: list[list[str]]) -> None:
        """Go on with the batches a stopped run had drawn but not used; none if the batch size changed."""
        self.pending = pending if all(len(batch) == self.texts_per_batch for batch in pending) else []

    def _texts(self) -> list[str]:
        """The next batch's inputs. Inputs are drawn a pool at a time and sorted by length, so that a
        batch holds inputs of similar length and little of its compute goes to padding."""
        per_batch = self.texts_per_batch
        if not self.pending:
            pool = sorted(self.probed.task.sample_texts(self.rng, per_batch * self.pool_batches, decoder=True), key=len)
            self.pending = [pool[i : i + per_batch] for i in range(0, len(pool), per_batch)]
            self.rng.shuffle(self.pending)
        return self.pending.pop()

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

    def _attended_positions(
        self, pattern: torch.Tensor, lengths: torch.Tensor, source: torch.Tensor, fallback: torch.Tensor, generator
    ) -> torch.Tensor:
        """A text token where the chosen head's weight on BOS (``pattern`` (n_texts, T)) is below one
        half, so the head reads something from the input there; ``fallback`` where there is none."""
        width = pattern.shape[1]
        text_token = before_eos(lengths, width) & torch.arange(width)[None, :].ge(1)
        away = (pattern < 0.5) & text_token
        scores = torch.rand(len(source), width, generator=generator).masked_fill(~away[source], -1.0)
        return torch.where(away[source].any(-1), scores.argmax(-1), fallback)

    def _positions(self, mode: str, head, texts, lengths, source, patterns, generator) -> torch.Tensor:
        """One query position per example (B,), by the position ``mode``, a share at BOS."""
        batch = source.shape[0]
        # Text tokens are positions 1 .. length-2 (BOS first, EOS last).
        positions = 1 + (torch.rand(batch, generator=generator) * (lengths[source] - 2)).long()
        if mode == "last":
            positions = lengths[source] - 2
        elif mode in ("named", "mixed") and self.probed.task.query_position_names():
            named = self._named_positions(texts, source, torch.rand(batch, generator=generator))
            share = 1.0 if mode == "named" else self.config.named_share
            positions = torch.where(torch.rand(batch, generator=generator) < share, named, positions)
        elif mode == "attention":
            pattern = patterns[head[0]][:, head[1], :, 0]  # (n_texts, T): weight on BOS
            positions = self._attended_positions(pattern, lengths, source, positions, generator)
        at_bos = torch.rand(batch, generator=generator) < self.config.bos_share
        return torch.where(at_bos, torch.zeros_like(positions), positions)

    def batch(self, generator: torch.Generator) -> TrainingBatch:
        """The next batch of B queries, each a text, one of its sites and one of its positions."""
        texts = self._texts()
        ids, lengths = self.probed.encode_batch(texts)
        mode, head = parse_position_mode(self.config.positions, self.probed)  # the config may change between batches
        attention_layers = (head[0],) if head else ()
        acts, patterns = self.probed.activations(ids, self.sites, attention_layers=attention_layers)
        stacked = torch.stack([acts[s] for s in self.sites])  # (S, n_texts, T, d)
        per_input = self.config.queries_per_input
        source = torch.arange(len(texts)).repeat_interleave(per_input)[: self.config.batch_size]  # (B,) text of each
        site_ids = torch.multinomial(self.site_weights, source.shape[0], replacement=True, generator=generator)
        positions = self._positions(mode, head, texts, lengths, source, patterns, generator)
        activation = stacked[site_ids, source, positions].float()  # (B, d), float32 whatever the model's dtype
        ids, lengths = ids[source], lengths[source]
        targets = next_token_targets(ids, lengths)
        return TrainingBatch(ids[:, :-1], activation, site_ids, targets, self._weights(targets, positions))

    def _weights(self, targets: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Each target's loss weight (B, T-1): ``query_weight`` for the tokens the activation reads,
        1 for the others. An encoder's activation holds its own token most directly (the token at
        the query's position, predicted at index position - 1); a causal model's is made by every
        token up to its position and by none after, so all of those weigh alike. A query at BOS
        reads no token."""
        weights = torch.ones(targets.shape)
        index = torch.arange(targets.shape[1])[None, :]  # target j predicts the token at position j + 1
        read = index == positions[:, None] - 1 if self.probed.is_encoder else index < positions[:, None]
        return weights.masked_fill(read, self.config.query_weight)
