"""The one result object of a reading: the CLI, the JSON output, the viewer and the report all
render this."""

from __future__ import annotations

from dataclasses import asdict, dataclass

DIGITS = 6
"""Decimals of the figures in a reading's JSON, about float32's precision (``in_preimage`` says
which side of ε a sample lies on)."""


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
    whitening: dict | None = None
    """With the whitened metric: the N, shrinkage and date of the site's covariance."""


@dataclass
class Sample:
    text: str
    tokens: list[str]
    distance: float
    best_position: int
    in_preimage: bool
    probability_change: list[float]
    """p(token | query) − p(token | baseline) under the decoder, per token (0 for BOS); the views
    colour tokens by it."""
    position_distances: list[float]
    temperature: float
    noise: float
    annotation: str | None = None
    boundary_search: bool = False
    """Drawn by the search for the ε boundary (no scheduled sample fell outside ε); not counted in
    the reading's precision."""
    refined: bool = False
    """Found by refining a near miss (``decoder/refine.py``); not counted in the precision."""
    inclusion: float | None = None
    """For a member of a reading made to be explained: the chance that the reading's scheduled draws
    include it at least once (``interpret/inclusion.py`` counts it by the inverse)."""

    @property
    def colors(self) -> list[float]:
        """The former name of ``probability_change``, kept for one release."""
        return self.probability_change


@dataclass
class InversionResult:
    query: Query
    settings: Settings
    samples: list[Sample]
    """Sorted by distance, nearest first."""
    precision: float
    """Share of the samples inside ε: the decoder's precision on this query (as ``completeness``
    reports it)."""
    seconds: float
    annotation: str | None = None
    """The task's note on the query input itself."""
    boundary_note: str | None = None
    """Set when no scheduled sample fell outside ε: what the search for the boundary drew and found."""
    features: list[dict] | None = None
    """With ``--explain`` (``interpret/explain.py``): each feature's ``name``, ``query_value``,
    ``consistency``, ``baseline``, ``verdict`` and ``n_members``, ranked."""
    explanation: str | None = None
    """With ``--explain``: one sentence on what the activation keeps."""
    refined: dict | None = None
    """With refinement: ``members``, ``distinct_members``, ``evaluations`` and
    ``members_per_1000_evaluations``, and the same under ``without_refinement``."""

    @property
    def share_in_preimage(self) -> float:
        """The former name of ``precision``, kept for one release."""
        return self.precision

    def to_dict(self) -> dict:
        """The JSON object of a reading. ``colors`` and ``share_in_preimage`` repeat
        ``probability_change`` and ``precision`` under their former names, for one release."""
        data = asdict(self)
        for sample in data["samples"]:
            # float32 figures printed as float64 carry digits they never had (0.7718999981880188)
            sample["distance"] = round(sample["distance"], DIGITS)
            for key in ("probability_change", "position_distances"):
                sample[key] = [round(value, DIGITS) for value in sample[key]]
            sample["colors"] = sample["probability_change"]
            if sample["inclusion"] is None:  # only a reading made to be explained has them
                del sample["inclusion"]
        data["share_in_preimage"] = data["precision"]
        return data

    def unique_samples(self) -> list[tuple[Sample, int]]:
        """Distinct sample texts in distance order, each with how often it was drawn."""
        counts: dict[str, int] = {}
        first: dict[str, Sample] = {}
        for sample in self.samples:
            counts[sample.text] = counts.get(sample.text, 0) + 1
            first.setdefault(sample.text, sample)
        return [(first[text], counts[text]) for text in first]
