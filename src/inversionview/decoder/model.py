"""The decoder: a small GPT that writes the probed model's input, given one activation and its site.

The activation is scaled per site, joined with a learned site embedding and passed through a short
residual MLP stack; the resulting vector enters every self-attention layer as one extra key/value
slot that all positions may attend to; it is also added to every input embedding, so that each
position sees it before any attention is learned. One decoder serves every site of a probed model.

Optionally the read-out also scores each token by how much the activation resembles that token's
input embedding in the probed model (``token_match``), a gated term the decoder learns where to use.

Optionally each input token also carries its occurrence number (how many times that token has
appeared so far, itself included), a generic prior that lets a small decoder write an exact number
of copies of a token, as counting inputs need, by attending to the token's latest occurrence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from inversionview.tasks import before_eos


@dataclass
class DecoderConfig:
    vocab_size: int
    max_len: int
    d_activation: int
    sites: list[str]
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    n_condition_layers: int = 2
    gelu_approximate: str = "none"
    """"tanh" for decoders that start from GPT-2 weights, whose GELU is the tanh approximation."""
    occurrences: bool = False
    """Add an embedding of each token's occurrence number (capped at ``MAX_OCCURRENCE``)."""
    tied_embeddings: bool = False
    """Read out with the token embedding (no separate head): half the parameters of a decoder for a
    30k-token vocabulary, and a read-out that starts from the probed model's own embeddings."""
    corpus_tokens: bool = False
    """Write only the tokens of the training corpus (the ``writable`` mask, set by
    ``restrict_vocabulary``). A corpus uses a part of a large vocabulary (fortunes: 20k of BERT's
    30k), and the read-out dominates a small decoder's compute; the tokens left out are ones the
    decoder never sees a target of, so it could not learn to write them anyway."""
    token_match: bool = False
    """Add to each next-token logit a gated match score: the cosine of the activation to the token's
    input embedding in the probed model, times sqrt(d_activation) (so that unrelated tokens, at
    cosines near 1/sqrt(d), score about 1), times a gate the decoder reads from its features at
    that position. Early layers of a text encoder keep the token they sit on nearly unchanged
    (MiniLM, layers 0 and 1: the nearest input embedding is the token itself for 200 of 200
    held-out queries), which a small decoder otherwise has to learn token by token. The embedding is
    not saved with the decoder; it is taken from the probed model (``attach_probed_embedding``)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DecoderConfig:
        return cls(**data)


MAX_OCCURRENCE = 32


def occurrence_numbers(ids: torch.Tensor) -> torch.Tensor:
    """For token ids (B, T): how many times each position's token has occurred up to and including
    that position, capped at ``MAX_OCCURRENCE``: (B, T)."""
    same = ids[:, :, None] == ids[:, None, :]  # (B, T, T): token t equals token j
    earlier = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool, device=ids.device).tril()
    return (same & earlier).sum(-1).clamp_max(MAX_OCCURRENCE)


def next_token_targets(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """What each position of ``ids`` (B, T) should predict: the next token up to and including EOS,
    -100 (not scored) after it, whatever the padding's id. ``lengths`` (B,) count BOS and EOS: (B, T - 1)."""
    return ids[:, 1:].masked_fill(~before_eos(lengths.to(ids.device), ids.shape[1] - 1), -100)


class ResidualMLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.ln(x))))


class ConditionEncoder(nn.Module):
    """(activation, site) -> one conditioning vector of width d_model."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        d = config.d_model
        # Activations differ in scale from site to site; a fixed per-site scale (set from data
        # before training) brings them to unit RMS without discarding their relative norm.
        self.register_buffer("site_scale", torch.ones(len(config.sites)))
        self.project = nn.Linear(config.d_activation, d)
        self.site_embedding = nn.Embedding(len(config.sites), d)
        self.layers = nn.ModuleList(ResidualMLP(d) for _ in range(config.n_condition_layers))
        self.ln = nn.LayerNorm(d)

    def forward(self, activation: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        x = self.project(activation / self.site_scale[site, None]) + self.site_embedding(site)  # (B, d)
        for layer in self.layers:
            x = layer(x)
        return self.ln(x)


class SelfAttention(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        return x.view(batch, length, self.n_heads, d // self.n_heads).transpose(1, 2)  # (B, H, T, dh)

    def forward(self, x: torch.Tensor, condition: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        """``x`` (B, T, d) attends causally to itself and to ``condition`` (B, 1, d), its extra slot.

        With ``cache`` (a two-item list, filled on the first call) ``x`` holds only new positions.
        """
        q, k, v = self.qkv(x).split(x.shape[-1], dim=2)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if cache is None or not cache:
            _, ck, cv = self.qkv(condition).split(x.shape[-1], dim=2)
            k = torch.cat([self._heads(ck), k], dim=2)
            v = torch.cat([self._heads(cv), v], dim=2)
        else:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        if cache is not None:
            cache[:] = [k, v]
        new, total = q.shape[2], k.shape[2]
        # Query i (absolute position total - new + i - 1 among tokens) sees the slot and tokens <= itself.
        mask = torch.ones(new, total, dtype=torch.bool, device=x.device).tril(diagonal=total - new)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, new, dh)
        return self.proj(y.transpose(1, 2).reshape(x.shape))


class Block(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, 4 * config.d_model),
            nn.GELU(approximate=config.gelu_approximate),
            nn.Linear(4 * config.d_model, config.d_model),
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), self.ln_1(condition), cache)
        return x + self.mlp(self.ln_2(x))


class Decoder(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.condition = ConditionEncoder(config)
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        if config.occurrences:
            self.occurrence_embedding = nn.Embedding(MAX_OCCURRENCE + 1, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        if not config.tied_embeddings:
            self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.corpus_tokens:
            self.register_buffer("writable", torch.ones(config.vocab_size, dtype=torch.bool))
        if config.token_match:
            self.match_gate = nn.Linear(config.d_model, 1)
            shape = (config.vocab_size, config.d_activation)
            self.register_buffer("probed_embedding", torch.zeros(shape), persistent=False)
        self.apply(self._init)
        for name, param in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * config.n_layers))
        if config.token_match:  # closed at first: the decoder starts as it would without the match
            nn.init.zeros_(self.match_gate.weight)

    @property
    def device(self) -> torch.device:
        return self.token_embedding.weight.device

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(
        self,
        ids: torch.Tensor,
        activation: torch.Tensor,
        site: torch.Tensor,
        targets: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next-token logits (B, T, vocab) for token ids (B, T), one activation (B, d_act) and site
        (B,) each; with ``targets`` (B, T, -100 where there is none), their mean cross-entropy instead
        (weighted by ``weights`` (B, T) where given), read out only where there is a target, and only
        over the writable tokens."""
        condition = self.condition(activation, site)[:, None, :]  # (B, 1, d)
        match = self.match_scores(activation)  # (B, vocab) or None
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.token_embedding(ids) + self.position_embedding(positions) + condition  # (B, T, d)
        if self.config.occurrences:
            x = x + self.occurrence_embedding(occurrence_numbers(ids))
        for block in self.blocks:
            x = block(x, condition)
        if targets is None:
            return self.read_out(self.ln_f(x), None if match is None else match[:, None, :])
        scored = targets != -100
        features, targets = self.ln_f(x[scored]), targets[scored]  # (N, d), (N,)
        weights = torch.ones_like(targets, dtype=features.dtype) if weights is None else weights[scored]
        row = scored.nonzero()[:, 0]  # each scored position's input, whose match scores it reads
        if not self.config.corpus_tokens:
            logits = self.read_out(features, None if match is None else match[row])
            return weighted_mean(F.cross_entropy(logits, targets, reduction="none"), weights)
        # Vocabulary id -> read-out column; a target outside the mask maps to -1, which cross_entropy
        # refuses (training widens the mask to its corpus first: DecoderTraining.restore).
        column = torch.where(self.writable, self.writable.long().cumsum(0) - 1, -1)
        _, logits = self._written_logits(features, match, rows=row)  # (N, writable)
        return weighted_mean(F.cross_entropy(logits, column[targets], reduction="none"), weights)

    @torch.no_grad()
    def attach_probed_embedding(self, embedding: torch.Tensor) -> None:
        """Take the probed model's input embedding (vocab, d_activation) for ``token_match``."""
        rows = min(embedding.shape[0], self.config.vocab_size)
        self.probed_embedding.zero_()
        self.probed_embedding[:rows] = F.normalize(embedding[:rows].float(), dim=-1).to(self.device)

    def match_scores(self, activation: torch.Tensor) -> torch.Tensor | None:
        """Match scores (B, vocab) of activations (B, d_act) to every token (``DecoderConfig.token_match``);
        None for decoders without them."""
        if not self.config.token_match:
            return None
        cosine = F.normalize(activation.float(), dim=-1) @ self.probed_embedding.T
        return cosine * math.sqrt(self.config.d_activation)

    def restrict_vocabulary(self, token_ids: list[int]) -> None:
        """Write only ``token_ids`` from now on (``DecoderConfig.corpus_tokens``)."""
        mask = torch.zeros(self.config.vocab_size, dtype=torch.bool, device=self.device)
        mask[torch.tensor(sorted(set(token_ids)), dtype=torch.long, device=self.device)] = True
        if self.config.corpus_tokens:  # in place: a DistributedDataParallel wrapper holds this buffer
            self.writable.copy_(mask)
        else:
            self.config = replace(self.config, corpus_tokens=True)
            self.register_buffer("writable", mask)

    def start(self, activation: torch.Tensor, site: torch.Tensor) -> DecodingState:
        """The state for decoding one sequence per row of ``activation`` (B, d_act), token by token."""
        batch = activation.shape[0]
        # Occurrence counts are (B, vocab): kept only by decoders that read them, since for a
        # 50k-token vocabulary and thousands of rows they would be the largest tensor of all.
        seen = (
            torch.zeros(batch, self.config.vocab_size, dtype=torch.long, device=activation.device)
            if self.config.occurrences
            else None
        )
        condition = self.condition(activation, site)[:, None, :]
        return DecodingState(condition, [[] for _ in self.blocks], seen, self.match_scores(activation))

    def step(self, state: DecodingState, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Feed each row's token (B,) at position ``pos``; returns next-token logits (B, vocab), float32.

        Generation (``generate``, ``decoder.distinct``) is built on this, so both decode the same way."""
        return self.read_out(self.step_features(state, tokens, pos), state.match)

    def read_out(self, features: torch.Tensor, match: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (..., vocab), float32, from final features (..., d) and, for a decoder
        with ``token_match``, the rows' match scores (..., vocab); -inf for the tokens the decoder
        does not write."""
        if not self.config.corpus_tokens:
            return self._matched((features @ self._read_out_weight().T).float(), features, match)
        written, scores = self._written_logits(features, match)
        logits = features.new_full((*features.shape[:-1], self.config.vocab_size), float("-inf"), dtype=torch.float)
        logits[..., written] = scores
        return logits

    def _written_logits(
        self, features: torch.Tensor, match: torch.Tensor | None, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The writable token ids (W,) in vocabulary order, and their logits (..., W), float32, for the
        read-out and the loss alike. ``rows``, where given, is each feature row's row of ``match``
        (the loss reads out only scored positions; the match is sliced to the writable tokens first,
        the smaller gather)."""
        written = self.writable.nonzero()[:, 0]
        logits = (features @ self._read_out_weight()[written].T).float()
        if match is None:
            return written, logits
        match = match[..., written]
        return written, self._matched(logits, features, match if rows is None else match[rows])

    def _matched(self, logits: torch.Tensor, features: torch.Tensor, match: torch.Tensor | None) -> torch.Tensor:
        """``logits`` plus the gated match scores, for a decoder with ``token_match``."""
        if not self.config.token_match:
            return logits
        return logits + self.match_gate(features).float() * match

    def _read_out_weight(self) -> torch.Tensor:
        """(vocab, d): the token embedding where the read-out is tied to it, else the head."""
        return self.token_embedding.weight if self.config.tied_embeddings else self.head.weight

    def step_features(self, state: DecodingState, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """``step`` before the read-out: the final features (B, d). Callers with many rows and a large
        vocabulary read them out a slice of rows at a time."""
        x = self.token_embedding(tokens[:, None]) + self.position_embedding.weight[pos] + state.condition
        if self.config.occurrences:
            rows = torch.arange(tokens.shape[0], device=tokens.device)
            state.seen[rows, tokens] += 1
            x = x + self.occurrence_embedding(state.seen[rows, tokens].clamp_max(MAX_OCCURRENCE))[:, None, :]
        for block, cache in zip(self.blocks, state.caches):
            x = block(x, state.condition, cache)
        return self.ln_f(x[:, -1])

    @torch.no_grad()
    def generate(
        self,
        activation: torch.Tensor,
        site: torch.Tensor,
        *,
        bos_id: int,
        eos_id: int,
        pad_id: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        prefix: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample one sequence per row of ``activation`` (B, d_act): ids (B, max_len), BOS first,
        EOS last, PAD after it. Temperature 0 is greedy. With ``prefix`` (B, max_len) and ``keep``
        (B,), row b's first ``keep[b]`` tokens (BOS included, no EOS among them) are ``prefix``'s and
        only the rest is sampled."""
        batch = activation.shape[0]
        state = self.start(activation, site)
        ids = torch.full((batch, self.config.max_len), pad_id, dtype=torch.long, device=activation.device)
        ids[:, 0] = bos_id
        finished = torch.zeros(batch, dtype=torch.bool, device=activation.device)
        if prefix is not None:
            kept = torch.arange(self.config.max_len, device=ids.device) < keep.to(ids.device)[:, None]
            ids = torch.where(kept, prefix.to(ids.device), ids)
        for pos in range(self.config.max_len - 1):
            logits = mask_unwritable(self.step(state, ids[:, pos], pos), bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
            if pos == self.config.max_len - 2:  # the last slot can only end the sequence
                token = torch.full((batch,), eos_id, device=ids.device)
            elif temperature == 0:
                token = logits.argmax(-1)
            else:
                probs = (logits / temperature).softmax(-1)
                if generator is not None and generator.device != probs.device:  # a CPU generator, seeded
                    probs = probs.to(generator.device)
                token = torch.multinomial(probs, 1, generator=generator)[:, 0].to(ids.device)
            token = torch.where(finished, torch.full_like(token, pad_id), token)
            if prefix is not None:
                token = torch.where(kept[:, pos + 1], ids[:, pos + 1], token)
            ids[:, pos + 1] = token
            finished |= token == eos_id
            if finished.all():
                break
        return ids


@dataclass
class DecodingState:
    """What a decoder carries from one generated token to the next, one row per sequence."""

    condition: torch.Tensor
    """(B, 1, d): the conditioning vector, the attention layers' extra slot."""
    caches: list[list]
    """Per layer, [keys, values] of the positions fed so far (empty before the first step)."""
    seen: torch.Tensor | None
    """(B, vocab): how often each token has been fed; None for decoders without occurrences."""
    match: torch.Tensor | None = None
    """(B, vocab): the activation's match score to each token; None for decoders without them."""

    def select(self, rows: torch.Tensor) -> None:
        """Keep the rows ``rows`` (a beam's parents, repeats allowed), in that order."""
        self.condition = self.condition[rows]
        self.match = None if self.match is None else self.match[rows]
        self.caches = [[tensor[rows] for tensor in cache] for cache in self.caches]
        if self.seen is not None:
            self.seen = self.seen[rows]


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / weights.sum()


def mask_unwritable(logits: torch.Tensor, *, bos_id: int, eos_id: int, pad_id: int) -> torch.Tensor:
    """Next-token logits (B, vocab) with BOS and PAD made impossible (they are never generated,
    unless one of them is also the EOS token)."""
    never = sorted({pad_id, bos_id} - {eos_id})
    logits[:, never] = float("-inf")
    return logits
