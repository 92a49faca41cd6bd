"""Sampling schedules: which (temperature, activation noise) pairs share the samples."""

from __future__ import annotations

from dataclasses import dataclass

from inversionview.errors import UserError

# Mostly plain T=1 samples (the decoder's belief), some sharper, some broader and noised, so the
# view shows both the core of the preimage and its edge.
AUTO_SCHEDULE = ((1.0, 0.0), (0.5, 0.0), (1.0, 0.05), (1.5, 0.0), (1.0, 0.1))


@dataclass(frozen=True)
class Schedule:
    """(temperature, noise) pairs; samples are split among them as evenly as possible."""

    pairs: tuple[tuple[float, float], ...]
    name: str

    def split(self, n: int) -> list[tuple[float, float, int]]:
        """(temperature, noise, count) for ``n`` samples."""
        k = len(self.pairs)
        return [(t, e, n // k + (i < n % k)) for i, (t, e) in enumerate(self.pairs) if n // k + (i < n % k) > 0]


def parse_schedule(spec: str | None, temperature: float | None = None) -> Schedule:
    """``"auto"``, or ``"T:NOISE,T:NOISE,…"``; a single ``temperature`` means that one, no noise."""
    if temperature is not None:
        if temperature < 0:
            raise UserError(f"temperature must be >= 0, got {temperature}")
        return Schedule(((temperature, 0.0),), f"T={temperature:g}")
    if spec in (None, "auto"):
        return Schedule(AUTO_SCHEDULE, "auto")
    pairs = []
    for part in spec.split(","):
        t_text, _, noise_text = part.partition(":")
        try:
            pair = (float(t_text), float(noise_text or 0))
        except ValueError:
            raise UserError(f"bad schedule entry {part!r}; write TEMPERATURE[:NOISE], e.g. 1.0:0.05") from None
        if pair[0] < 0 or pair[1] < 0:
            raise UserError(f"schedule entry {part!r} must not be negative")
        pairs.append(pair)
    return Schedule(tuple(pairs), spec)
