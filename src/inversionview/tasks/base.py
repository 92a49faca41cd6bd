"""The task interface: what a case study tells the rest of the library.

A task owns its tokenizer, a seeded generator of inputs, a fixed train/held-out split, the named
positions of an input, and which next-token predictions the probed model is scored on.
"""

from __future__ import annotations

import random
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

from inversionview.errors import UserError
from inversionview.tasks.tokenizer import Tokenizer

Feature = Callable[[str, int], Hashable]
"""A feature of an input: a function of its text and the position being read."""


@dataclass(frozen=True)
class Answer:
    """What a patch is measured by: logit(answer) − logit(alt) at ``position``."""

    position: int
    """Where the prediction is read (BOS = 0): the position that predicts the answer."""
    answer: int | None
    alt: int | None
    """Token ids whose logits count for and against; None when the next-token distribution is compared."""
    description: str


def logit_difference(tokenizer: Tokenizer, at: int, answer: int, alt: int, what: str) -> Answer:
    """The answer ``answer`` against ``alt`` at position ``at``, described for the reader."""
    description = f"{what}: logit({tokenizer.token_str(answer)}) − logit({tokenizer.token_str(alt)}) at position {at}"
    return Answer(at, answer, alt, description)


class Task(ABC):
    """A case study: inputs, their split, their named positions and the probed model's metric.

    A task registers itself by name (``tasks.registry.register_task``); everything the rest of the
    library knows about it comes from these methods, so no code outside ``tasks/`` tests its name.
    """

    name: str
    tokenizer: Tokenizer
    max_len: int
    """Longest encoded input, BOS and EOS included."""
    heldout_share: float = 0.1
    reads_corpus: bool = False
    """Whether inputs are drawn from a corpus the user gives (free text), not generated."""

    @abstractmethod
    def sample_text(self, rng: random.Random) -> str:
        """One input drawn from the task's distribution (train and held-out alike)."""

    @abstractmethod
    def named_positions(self, text: str) -> dict[str, int]:
        """Named token positions of ``text`` (BOS = 0), e.g. ``{":": 21}``."""

    @abstractmethod
    def target_positions(self, text: str) -> list[int]:
        """Positions whose next-token prediction is the probed model's job."""

    def query_position_names(self) -> list[str]:
        """Names of the positions of interest: decoder precision is measured there, and decoder
        training puts a share of its queries there."""
        return []

    def query_positions(self, text: str) -> list[int]:
        """The positions of interest that ``text`` has (a short input may lack some)."""
        named = self.named_positions(text)
        return [named[n] for n in self.query_position_names() if n in named]

    def features(self) -> dict[str, Feature]:
        """Named features of an input, each a function ``(text, position) -> value``: the hypotheses a
        reading's preimage is checked against (``interpret/``)."""
        return {"length": lambda text, position: len(self.tokenizer.encode(text))}

    def contrast(self, text: str, rng: random.Random) -> str:
        """An input of the same length whose answer differs from ``text``'s in one controlled way,
        for activation patching (``--source auto``)."""
        raise UserError(f"the {self.name} task has no contrast inputs; give a `source`")

    @classmethod
    def build(cls, tokenizer: Tokenizer | None = None, **options) -> Task:
        """The task with ``tokenizer`` (else its own) and the options a user gave for it."""
        if options:
            raise UserError(f"the {cls.name} task takes no options ({', '.join(sorted(options))})")
        return cls(tokenizer) if tokenizer is not None else cls()

    def options(self) -> dict:
        """The options the task was built with (``build``), saved beside a model so it loads the same."""
        return {}

    def answer(
        self, text: str, source: str, *, target: str | None = None, answer: str | None = None, alt: str | None = None
    ) -> Answer:
        """The metric of a patch of ``source`` into ``text``: by default ``answer`` against ``alt`` (one
        token each) at the last input position, or, without them, the next-token distribution there."""
        last = len(self.encode(text)) - 2  # the last input token predicts what comes next
        if answer is None and alt is None:
            return Answer(last, None, None, f"the next-token distribution at position {last}")
        if answer is None or alt is None:
            raise UserError("give both answer and alt (or neither, to compare the next-token distributions)")
        ids = self._one_token(answer, "answer"), self._one_token(alt, "alt")
        return logit_difference(self.tokenizer, last, *ids, "answer")

    def _one_token(self, text: str, option: str) -> int:
        ids = self.tokenizer.encode(text)
        if len(ids) != 1:
            raise UserError(f"{option} {text!r} is {len(ids)} tokens in this model's vocabulary; give one token")
        return ids[0]

    def enumerate_texts(self) -> list[str] | None:
        """Every input of the task, when the input space is small enough to list; else None."""
        return None

    breakdown: str | None = None
    """The JSON key under which ``evaluate`` also reports accuracy by ``evaluation_group`` (e.g.
    ``"by_relation"``); None for none."""

    def evaluation_group(self, text: str) -> tuple[str, str]:
        """(group, column) under which an input's score is reported when the task has a ``breakdown``,
        e.g. ``("country", "held_out")``."""
        raise NotImplementedError

    def training_tokens(self) -> set[int] | None:
        """The token ids a decoder must be able to write: those of the training inputs and EOS,
        where they are a fixed list worth restricting to (a corpus); None for the whole vocabulary."""
        return None

    def annotate(self, text: str) -> str | None:
        """A short task-specific note on a sample (the viewer shows it), or None."""
        return None

    def validate(self, text: str) -> None:
        """Raise UserError if ``text`` cannot be fed to the probed model."""
        ids = self.tokenizer.encode(text)
        if len(ids) + 2 > self.max_len:
            raise UserError(f"input has {len(ids)} tokens; this task allows at most {self.max_len - 2}")

    def judge(self, texts: list[str], ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B,) bool: which inputs the probed model gets right. By default, every scored next token
        (label != -100) is the argmax: greedy exact match."""
        scored = labels != -100
        return ((logits.argmax(-1) == labels) | ~scored).all(-1)

    def is_heldout(self, text: str) -> bool:
        """Whether ``text`` belongs to the held-out split (a fixed hash of the text)."""
        return self.hashed_out(text)

    def hashed_out(self, key: str) -> bool:
        """Whether ``key`` falls in the held-out share by a fixed hash: the same key, the same answer,
        on every machine and in every run."""
        return zlib.crc32(key.encode()) % 1000 < self.heldout_share * 1000

    def is_decoder_heldout(self, text: str) -> bool:
        """Whether ``text`` belongs to the decoder's held-out split: by default the probed model's.
        A task whose held-out split is a part of its input space that users read too (facts: held-out
        templates) holds out other inputs from the decoder, which must learn to write them all."""
        return self.is_heldout(text)

    def sample_texts(self, rng: random.Random, n: int, split: str = "train", *, decoder: bool = False) -> list[str]:
        """``n`` inputs of one split: ``"train"``, ``"heldout"`` or ``"any"``; the decoder's split
        (``is_decoder_heldout``) with ``decoder``, the probed model's without."""
        if split not in ("train", "heldout", "any"):
            raise ValueError(f"unknown split {split!r}")
        held_out = self.is_decoder_heldout if decoder else self.is_heldout
        texts: list[str] = []
        while len(texts) < n:
            text = self.sample_text(rng)
            if split == "any" or held_out(text) == (split == "heldout"):
                texts.append(text)
        return texts

    def encode(self, text: str) -> list[int]:
        """``BOS + tokens + EOS``."""
        tok = self.tokenizer
        return [tok.bos_id, *tok.encode(text), tok.eos_id]


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into a ``(B, T)`` tensor; also returns the ``(B,)`` lengths."""
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.full((len(sequences), int(lengths.max())), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
    return ids, lengths


def before_eos(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) mask of each row's positions before its EOS: BOS and the text tokens.

    ``lengths`` (B,) count BOS and EOS, as ``pad_batch`` returns them. Position ``j`` of a
    next-token target row predicts token ``j + 1``, so the same mask marks the scored targets."""
    return torch.arange(width, device=lengths.device)[None, :] < (lengths - 1)[:, None]
