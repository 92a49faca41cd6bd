"""The settings of a reading, as one object: the command line, the page, the report and the JSON
share it, and it checks itself when made."""

from __future__ import annotations

from dataclasses import dataclass

from inversionview.decoder.refine import check_refine
from inversionview.decoder.schedule import Schedule, parse_schedule
from inversionview.errors import UserError
from inversionview.probed.distance import EpsilonBall


@dataclass(frozen=True)
class ReadingSpec:
    """How to read an activation."""

    samples: int = 1000
    """Inputs drawn from the decoder."""
    seed: int = 0
    metric: str | None = None
    """euclidean, cosine or whitened; None: the probed model's."""
    epsilon: float | None = None
    """The ε-ball's radius; None: the probed model's (0.1)."""
    schedule: str = "auto"
    """auto, distinct (without replacement), or TEMPERATURE:NOISE pairs such as 1:0,0.5:0."""
    temperature: float | None = None
    """One temperature and no noise instead of the schedule's pairs."""
    refine: int = 0
    """Probed-model evaluations each distinct sample outside ε may spend to become a member."""
    explain: bool = False
    """Add the feature verdicts (``interpret/explain.py``)."""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise UserError(f"`samples` must be at least 1, got {self.samples}")
        check_refine(self.refine)
        if self.epsilon is not None:
            EpsilonBall(self.metric or "euclidean", self.epsilon)  # refuses ε that is not a number
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
