"""The input space of a task: every input when it can be listed, else a stated, seeded sample."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from inversionview.tasks import Task, pad_batch

DEFAULT_SAMPLE_SIZE = 200_000


@dataclass
class InputSpace:
    texts: list[str]
    ids: torch.Tensor
    """(N, T) encoded inputs, right-padded."""
    exhaustive: bool
    description: str

    @property
    def size(self) -> int:
        return len(self.texts)


_CACHE: dict[tuple, InputSpace] = {}


def input_space(task: Task, *, sample_size: int = DEFAULT_SAMPLE_SIZE, seed: int = 0) -> InputSpace:
    """All of ``task``'s inputs, or ``sample_size`` distinct ones drawn with ``seed`` when the space
    cannot be listed. Built once per process."""
    key = (task.name, repr(task.tokenizer.to_dict()), repr(task.options()), sample_size, seed)
    if key in _CACHE:
        return _CACHE[key]
    texts = task.enumerate_texts()
    if texts is not None:
        ids = task.enumerate_ids() if hasattr(task, "enumerate_ids") else None
        space = InputSpace(texts, ids if ids is not None else _encode(task, texts), True, f"all {len(texts):,} inputs")
    else:
        rng = random.Random(seed)
        unique = dict.fromkeys(task.sample_texts(rng, sample_size, split="any"))
        texts = list(unique)
        space = InputSpace(
            texts,
            _encode(task, texts),
            False,
            f"a seeded sample of {len(texts):,} distinct inputs (seed {seed}): the space is too large to list",
        )
    _CACHE[key] = space
    return space


def _encode(task: Task, texts: list[str]) -> torch.Tensor:
    return pad_batch([task.encode(t) for t in texts], task.tokenizer.pad_id)[0]
