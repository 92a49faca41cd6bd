"""The settings of a reading, as one object: the command line, the page, the report and the JSON
share it, and it checks itself when made."""

from __future__ import annotations

from dataclasses import dataclass

from inversionview.decoder.schedule import Schedule, parse_schedule
from inversionview.errors import UserError
from inversionview.probed.metric import Metric, check_ball


@dataclass(frozen=True)
class ReadingSpec:
    """How to read an activation."""

    samples: int = 1000
    """Inputs drawn from the decoder."""
    seed: int = 0
    """Seed of the samples drawn: the same seed, the same reading."""
    metric: Metric | None = None
    """Euclidean, cosine or whitened (euclidean after whitening by the site's covariance); default
    (None): the probed model's."""
    epsilon: float | None = None
    """The ε-ball's radius; default (None): the probed model's, 0.1 unless it says."""
    schedule: str = "auto"
    """auto, distinct (without replacement), or TEMPERATURE:NOISE pairs such as 1:0,0.5:0."""
    temperature: float | None = None
    """One temperature and no noise instead of the schedule's pairs."""
    refine: int = 0
    """Probed-model evaluations each distinct sample outside ε may spend to become a member."""
    explain: bool = False
    """Which features of the input the preimage keeps, against chance: the feature verdicts
    (``interpret/explain.py``)."""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise UserError(f"`samples` must be at least 1, got {self.samples}")
        if self.refine < 0:
            raise UserError(f"`refine` must be 0 or more evaluations a sample, got {self.refine}")
        if self.epsilon is not None:
            check_ball(self.metric or "euclidean", self.epsilon)
        self.parsed_schedule()

    def parsed_schedule(self) -> Schedule:
        return parse_schedule(self.schedule, self.temperature)

    def invert_options(self) -> dict:
        """The keyword arguments of ``invert`` this spec sets."""
        return {
            "samples": self.samples,
            "seed": self.seed,
            "metric": self.metric,
            "epsilon": self.epsilon,
            "schedule": self.parsed_schedule(),
            "refine": self.refine,
        }
