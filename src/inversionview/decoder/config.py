"""How to train a decoder: the recipe, checked before any work."""

from __future__ import annotations

from dataclasses import dataclass

from inversionview.errors import UserError

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
    tied_embeddings: bool = False
    """Read out with the token embedding (``decoder/model.py``): for large vocabularies."""
    token_match: bool = False
    """Add the activation's gated match to each token's probed input embedding to the read-out
    (``DecoderConfig.token_match``): for text models, whose early layers keep their token."""
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
    query_weight: float = 1.0
    """Weight of the loss on the token at the query's position, the others' being 1. The token an
    activation sits on is what it holds most directly, yet one of some thirty in a line of text; a
    weight above 1 spends more of each step on it. At the optimum every token's distribution is the
    same whatever the weight; only how fast each is learned changes."""
    sites: list[str] | None = None
    """The sites the decoder serves, by name; None: every site of the probed model."""
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
    samples inside ε are made more likely, those outside less (``decoder/reward.py``). 0: none.
    Meant for fine-tuning a trained decoder toward precision (with ``init_from`` that decoder)."""
    verified_samples: int = 8
    """Samples drawn for each verified query; their mean reward is the baseline."""

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
            "tied_embeddings": self.tied_embeddings,
            "token_match": self.token_match,
        }

    def check(self) -> None:
        """Refuse, in one line and before any work, a recipe that cannot train."""
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.eval_every < 1:
            raise UserError(f"--eval-every must be at least 1, got {self.eval_every}")
        if self.n_layers < 1 or self.n_condition_layers < 0:
            raise UserError(
                f"--n-layers must be at least 1 and --condition-layers at least 0, "
                f"got {self.n_layers} and {self.n_condition_layers}"
            )
        if self.init_from is None and (self.d_model < 1 or self.d_model % self.n_heads):
            raise UserError(f"--d-model must be a positive multiple of the {self.n_heads} heads, got {self.d_model}")
        if self.site_weight_floor <= 0:  # a floor of 0 would stop training a site once it reads perfectly
            raise UserError(f"--site-weight-floor must be above 0, got {self.site_weight_floor}")
        if self.query_weight <= 0:
            raise UserError(f"--query-weight must be above 0, got {self.query_weight}")
        batch = self.batch_size or DEFAULT_BATCH_SIZE
        if not 0 <= self.verified_queries <= batch or self.verified_samples < 2:
            raise UserError(
                f"--verified-queries must be between 0 and the batch size ({batch}), "
                f"and --verified-samples at least 2 (a query's samples are its own baseline)"
            )
