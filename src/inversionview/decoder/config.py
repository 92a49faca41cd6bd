"""How to train a decoder: the recipe, checked before any work."""

from __future__ import annotations

from dataclasses import dataclass, replace

from inversionview.errors import UserError

DEFAULT_BATCH_SIZE = 128
GPU_BATCH_SIZE = 1024
"""A budgeted run's batch on a GPU, where a step of these small decoders costs about the same at 128
and at 1,024 examples."""
DEFAULT_STEPS = 100_000
"""A run's length when neither ``steps`` nor ``minutes`` is given: the bundled recipe's."""
BUDGET_STEP_BOUND = 1_000_000_000
"""A budgeted run's ``steps``: its time, not a count, ends it."""
LARGE_VOCABULARY = 1000
"""From this many tokens a probed model reads text (word pieces), not a task's few symbols."""
QUERY_WEIGHT = 20.0
"""The loss weight of the tokens a query's activation reads (``DecoderTrainConfig.query_weight``),
for every probed model: measured on MiniLM, an encoder, and on the counting, addition and IOI
models, causal ones (docs/decoder-efficiency.md)."""

SAVED_BEFORE = {"query_weight": 1.0}
"""How a run saved before these fields existed trained (``DecoderTrainConfig.from_saved``)."""


@dataclass
class DecoderTrainConfig:
    """How to train a decoder. The defaults are the bundled counting decoder's recipe but for
    ``query_weight`` (the bundled task decoders trained at 1) and ``eval_queries`` (they were
    checked on 8)."""

    d_model: int = 128
    """The decoder's width (a multiple of ``n_heads``)."""
    n_layers: int = 2
    """Transformer blocks of the decoder."""
    n_heads: int = 4
    n_condition_layers: int = 2
    """Residual MLP blocks that read the activation. More than an ``init_from`` decoder has adds
    blocks that start as the identity."""
    occurrences: bool = False
    """Give the decoder each token's occurrence number (``decoder/model.py``)."""
    tied_embeddings: bool | None = None
    """Read out with the token embedding (``decoder/model.py``): for large vocabularies. None: on
    for a probed model of ``LARGE_VOCABULARY`` tokens or more (``for_vocabulary``)."""
    token_match: bool | None = None
    """Add the activation's gated match to each token's probed input embedding to the read-out
    (``DecoderConfig.token_match``): for text models, whose early layers keep their token. None: on
    for a probed model of ``LARGE_VOCABULARY`` tokens or more."""
    steps: int | None = None
    """Training steps (default 100,000 for a new run; a resumed run keeps its own). None: as
    many as ``minutes`` allow, when it is given."""
    minutes: float | None = None
    """A time budget in minutes: the run is planned to end, evaluated and saved, within it, start-up
    included. The learning rate decays over the time, evaluations fall at a quarter, a half and three
    quarters of it, and the final one is timed to fit (``training.Budget``). Excludes ``steps``."""
    batch_size: int | None = None
    """Training examples a step (default 128 for a new run; a resumed run keeps its own unless this
    is given). A GPU takes a far larger batch than a CPU core at the same speed."""
    lr: float = 2e-3
    """Peak learning rate."""
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
    query_weight: float = QUERY_WEIGHT
    """Weight of the loss on the tokens the query's activation reads, the others' being 1: an
    encoder's own token, which it holds most directly, yet one of some thirty in a line of text; a
    causal model's every token up to the query's position, since those and only those make the
    activation (the tokens after it are free in the preimage). A weight above 1 spends more of each
    step on them. At the optimum every token's distribution is the same whatever the weight; only how
    fast each is learned changes."""
    sites: list[str] | None = None
    """The sites the decoder serves, comma-separated on the command line (default: every site of the
    probed model)."""
    seed: int = 0
    """Seeds the decoder's first weights and the inputs it trains on."""
    eval_every: int = 2000
    """Steps between precision checks, which re-weight sites and positions."""
    eval_queries: int = 16
    """Held-out queries a precision check reads at every site; its standard error over them is
    recorded beside it. On the bundled facts decoder, 8 of the benchmark's queries (seed 2024) × 16
    samples read 80.3 % where 32 read 71.2 % and the benchmark's 40 × 50 read 70.8 %. A check's time
    grows with its queries (counting's 11 sites on one thread of a busy machine: 2.7 s for 8, 9.7 s
    for 32); 16, which a short budget still affords, cut the error by about 30 %."""
    eval_samples: int = 16
    eval_sites: int = 16
    """Sites an evaluation measures, at most: a model with more (MiniLM has over a hundred) has them
    measured in turn, these many at a time, so that no evaluation (the final one included) takes
    long. Sites not measured keep their last precision for the re-weighting."""
    epsilon: float | None = None
    """The ε of the precision checks; None: the probed model's."""
    metric: str | None = None
    """The metric of the precision checks; None: the probed model's."""
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
    samples inside ε are made more likely, those outside less (``decoder/reward.py``). 0: none.
    Meant for fine-tuning a trained decoder toward precision (with ``init_from`` that decoder)."""
    verified_samples: int = 8
    """Samples drawn for each verified query; their mean reward is the baseline."""

    @classmethod
    def from_saved(cls, saved: dict) -> DecoderTrainConfig:
        """The recipe a checkpoint records. One saved before a field existed trained as that field's
        old default, where the default has changed since (``query_weight``: 1 before it was 20)."""
        return cls(**{**SAVED_BEFORE, **saved})

    def for_vocabulary(self, vocab_size: int, pretrained_start: bool = False) -> DecoderTrainConfig:
        """This recipe with the switches left unset (None) set for a probed model of ``vocab_size``
        tokens: a text model's (``LARGE_VOCABULARY`` or more) reads out with tied embeddings and the
        token match, as measured on MiniLM (docs/minilm.md); a small task vocabulary gains nothing
        from them (docs/decoder-efficiency.md).
        A decoder that starts from a pretrained LM (``pretrained_start``) has its own read-out."""
        text = vocab_size >= LARGE_VOCABULARY
        unset = {
            "tied_embeddings": text,
            "token_match": text and not pretrained_start,
        }
        return replace(self, **{name: value for name, value in unset.items() if getattr(self, name) is None})

    def shape(self) -> dict:
        """The fields that decide the decoder's shape, as ``new_decoder`` takes them."""
        return {
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_condition_layers": self.n_condition_layers,
            "occurrences": self.occurrences,
            "init_from": self.init_from,
            "sites": self.sites,
            "tied_embeddings": bool(self.tied_embeddings),  # unset (None) before ``for_vocabulary``: off
            "token_match": bool(self.token_match),
        }

    def check(self) -> None:
        """Refuse, in one line and before any work, a recipe that cannot train."""
        if self.minutes is not None and not self.minutes > 0:
            raise UserError(f"`minutes` must be above 0, got {self.minutes:g}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"`batch_size` must be at least 1, got {self.batch_size}")
        if self.eval_every < 1:
            raise UserError(f"`eval_every` must be at least 1, got {self.eval_every}")
        if self.n_layers < 1 or self.n_condition_layers < 0:
            raise UserError(
                f"`n_layers` must be at least 1 and `n_condition_layers` at least 0, "
                f"got {self.n_layers} and {self.n_condition_layers}"
            )
        if self.init_from is None and (self.d_model < 1 or self.d_model % self.n_heads):
            raise UserError(f"`d_model` must be a positive multiple of the {self.n_heads} heads, got {self.d_model}")
        if self.site_weight_floor <= 0:  # a floor of 0 would stop training a site once it reads perfectly
            raise UserError(f"`site_weight_floor` must be above 0, got {self.site_weight_floor}")
        if self.query_weight <= 0:
            raise UserError(f"`query_weight` must be above 0, got {self.query_weight}")
        batch = self.batch_size or DEFAULT_BATCH_SIZE
        if not 0 <= self.verified_queries <= batch or self.verified_samples < 2:
            raise UserError(
                f"`verified_queries` must be between 0 and the batch size ({batch}), "
                f"and `verified_samples` at least 2 (a query's samples are its own baseline)"
            )
