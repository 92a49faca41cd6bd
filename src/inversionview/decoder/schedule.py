"""Sampling schedules: which (temperature, activation noise) pairs share the samples."""

from __future__ import annotations

from dataclasses import dataclass

from inversionview.errors import UserError

# Mostly plain T=1 samples (the decoder's belief), some sharper, some broader and noised, so the
# view shows both the core of the preimage and its edge.
AUTO_SCHEDULE = ((1.0, 0.0), (0.5, 0.0), (1.0, 0.05), (1.5, 0.0), (1.0, 0.1))


@dataclass(frozen=True)
class Schedule:
    """(temperature, noise) pairs; samples are split among them as evenly as possible.

    A ``distinct`` schedule has one pair, noise 0, and draws its samples without replacement
    (``decoder/distinct.py``): every sample is a different input, in the order drawn."""

    pairs: tuple[tuple[float, float], ...]
    name: str
    distinct: bool = False

    def split(self, n: int) -> list[tuple[float, float, int]]:
        """(temperature, noise, count) for ``n`` samples."""
        k = len(self.pairs)
        return [(t, e, n // k + (i < n % k)) for i, (t, e) in enumerate(self.pairs) if n // k + (i < n % k) > 0]

    def draw_counts(self, n: int) -> tuple[list[float], list[int]]:
        """For ``n`` samples: each pair's temperature and the samples drawn at it (the chance of an
        input being drawn depends on these, activation noise left out)."""
        split = self.split(n)
        return [t for t, _, _ in split], [count for _, _, count in split]


def parse_schedule(spec: str | None, temperature: float | None = None) -> Schedule:
    """``"auto"``, ``"distinct"`` (without replacement) or ``"T:NOISE,T:NOISE,…"``.

    A ``temperature`` means that one temperature and no noise; with ``"distinct"`` it sets the
    temperature of the draw without replacement (1 unless given)."""
    if temperature is not None and temperature < 0:
        raise UserError(f"temperature must be >= 0, got {temperature}")
    if spec == "distinct":
        temperature = 1.0 if temperature is None else temperature
        return Schedule(((temperature, 0.0),), f"distinct T={temperature:g}", distinct=True)
    if temperature is not None:
        return Schedule(((temperature, 0.0),), f"T={temperature:g}")
    if spec in (None, "auto"):
        return Schedule(AUTO_SCHEDULE, "auto")
    pairs = []
    for part in spec.split(","):
        t_text, _, noise_text = part.partition(":")
        try:
            pair = (float(t_text), float(noise_text or 0))
        except ValueError:
            raise UserError(
                f"bad schedule entry {part!r}; write 'auto', 'distinct' or TEMPERATURE[:NOISE] pairs, e.g. 1.0:0.05"
            ) from None
        if pair[0] < 0 or pair[1] < 0:
            raise UserError(f"schedule entry {part!r} must not be negative")
        pairs.append(pair)
    return Schedule(tuple(pairs), spec)
