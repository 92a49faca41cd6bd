"""The one result object of a reading: the CLI, the JSON output, the viewer and the report all
render this."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Query:
    text: str
    tokens: list[str]
    """BOS and the text tokens: every position that can be queried."""
    position: int
    site: str


@dataclass
class Settings:
    probed: str
    probed_hash: str
    decoder: str
    samples: int
    seed: int
    metric: str
    epsilon: float
    schedule: str
    schedule_pairs: list[tuple[float, float]]


@dataclass
class Sample:
    text: str
    tokens: list[str]
    distance: float
    best_position: int
    in_preimage: bool
    colors: list[float]
    """p(token | query) − p(token | baseline) under the decoder, per token (0 for BOS)."""
    position_distances: list[float]
    temperature: float
    noise: float
    annotation: str | None = None


@dataclass
class InversionResult:
    query: Query
    settings: Settings
    samples: list[Sample]
    """Sorted by distance, nearest first."""
    share_in_preimage: float
    seconds: float
    annotation: str | None = None
    """The task's note on the query input itself."""

    def to_dict(self) -> dict:
        return asdict(self)

    def unique_samples(self) -> list[tuple[Sample, int]]:
        """Distinct sample texts in distance order, each with how often it was drawn."""
        counts: dict[str, int] = {}
        first: dict[str, Sample] = {}
        for sample in self.samples:
            counts[sample.text] = counts.get(sample.text, 0) + 1
            first.setdefault(sample.text, sample)
        return [(first[text], counts[text]) for text in first]
