"""Resolving a query: an input, a position in it (a number or a task's name for one) and a site,
checked once, with the activation read there.

Reading, the exact preimage, completeness and patching all resolve queries; they live here, before
those stages in the pipeline, so each mistake gets the same message wherever it is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inversionview.errors import UserError
from inversionview.probed.metric import check_metric
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site
from inversionview.probed.verify import query_activation

Position = int | str
"""A query position: BOS = 0, negative from the end, or a name the task gives one (``"END"``)."""


def resolve_position(probed: ProbedModel, text: str, position: Position) -> int:
    """The position's index among ``text``'s queryable positions (BOS and the text tokens)."""
    n_positions = len(probed.task.encode(text)) - 1
    if isinstance(position, str):
        named = probed.task.named_positions(text)
        if position not in named:
            listed = ", ".join(named) or "none for this task"
            raise UserError(f"no position named {position!r} in {text!r}; named positions: {listed}")
        return named[position]
    resolved = position + n_positions if position < 0 else position
    if not 0 <= resolved < n_positions:
        raise UserError(
            f"position {position} is out of range: this input has positions 0..{n_positions - 1} "
            f"(BOS = 0), or -1..-{n_positions} from the end"
        )
    return resolved


@dataclass(frozen=True)
class ResolvedQuery:
    """A checked query: its site, its position among the queryable ones, and its activation (d,)."""

    site: Site
    position: int
    activation: torch.Tensor
    n_positions: int


def check_query(probed: ProbedModel, text: str, position: Position, sites: list[str]) -> None:
    """Refuse a bad input, position or site before anything costly (a decoder, sampling) is loaded."""
    probed.task.validate(text)
    resolve_position(probed, text, position)
    for site in sites:
        probed.site(site)


def resolve_query(probed: ProbedModel, text: str, position: Position, site: str | Site, metric: str) -> ResolvedQuery:
    """Validate a query (input, position, site, metric) and read its activation."""
    probed.task.validate(text)
    site = probed.site(site) if isinstance(site, str) else site
    check_metric(metric)
    n_positions = len(probed.task.encode(text)) - 1  # BOS and the text tokens
    index = resolve_position(probed, text, position)
    return ResolvedQuery(site, index, query_activation(probed, site, text, index), n_positions)


def position_table(probed: ProbedModel, text: str) -> list[dict]:
    """Every queryable position of ``text``: its index, its token, and the names the task gives it."""
    probed.task.validate(text)
    names: dict[int, list[str]] = {}
    for name, at in probed.task.named_positions(text).items():
        names.setdefault(at, []).append(name)
    return [
        {"position": i, "token": token, "names": names.get(i, [])} for i, token in enumerate(probed.query_tokens(text))
    ]
