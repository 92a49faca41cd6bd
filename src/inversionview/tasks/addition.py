"""3-digit addition: ``615+861=1476``.

``a+b=c`` with a and b in 100..999 and c their sum, one token per character. Positions (BOS = 0):
F1-F3 = 1-3, ``+`` = 4, S1-S3 = 5-7, ``=`` = 8, answer digits A1.. from 9 (A4 = 12 when the sum has
four digits; a three-digit sum ends at A3 and EOS follows). The probed model generates the answer
digits and the EOS after them. The 810,000 pairs are split once, by a seeded permutation, into 75 %
train and 25 % held-out.
"""

from __future__ import annotations

import random
import re
from functools import cached_property

import torch

from inversionview.errors import UserError
from inversionview.tasks.base import Answer, Feature, Task, logit_difference
from inversionview.tasks.registry import register_task
from inversionview.tasks.tokenizer import CharTokenizer

VOCAB = "0123456789+=" + "BEP"
LOW, HIGH = 100, 999
SPLIT_SEED = 20240
_FORMAT = re.compile(r"(\d{3})\+(\d{3})=(\d{1,4})")
POSITION_NAMES = ("F1", "F2", "F3", "+", "S1", "S2", "S3", "=", "A1", "A2", "A3", "A4")


ANSWER_DIGITS = ("A1", "A2", "A3", "A4")


@register_task
class AdditionTask(Task):
    name = "addition"
    max_len = 1 + 12 + 1
    heldout_share = 0.25

    def __init__(self, tokenizer: CharTokenizer | None = None) -> None:
        self.tokenizer = tokenizer or CharTokenizer(VOCAB, bos="B", eos="E", pad="P")

    @cached_property
    def _heldout_mask(self) -> torch.Tensor:
        """(900, 900) bool: which (a, b) pairs are held out, fixed by SPLIT_SEED."""
        n = (HIGH - LOW + 1) ** 2
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
        mask = torch.zeros(n, dtype=torch.bool)
        mask[order[: round(n * self.heldout_share)]] = True
        return mask.view(HIGH - LOW + 1, HIGH - LOW + 1)

    @staticmethod
    def format(a: int, b: int) -> str:
        return f"{a}+{b}={a + b}"

    def sample_text(self, rng: random.Random) -> str:
        return self.format(rng.randint(LOW, HIGH), rng.randint(LOW, HIGH))

    def operands(self, text: str) -> tuple[int, int, str]:
        match = _FORMAT.fullmatch(text)
        if not match or not all(LOW <= int(x) <= HIGH for x in match.groups()[:2]):
            raise UserError(f"{text!r} is not an addition input like '615+861=1476' (operands 100-999)")
        return int(match[1]), int(match[2]), match[3]

    def features(self) -> dict[str, Feature]:
        """Digits by position name (F1 is the first operand's hundreds), column sums, carries and the
        unordered digit pairs of each column."""

        def digits(text: str) -> dict[str, int]:
            a, b, answer = self.operands(text)
            named = {f"F{i + 1}": int(d) for i, d in enumerate(f"{a:03d}")}
            named |= {f"S{i + 1}": int(d) for i, d in enumerate(f"{b:03d}")}
            return named | {f"A{i + 1}": int(d) for i, d in enumerate(answer)}  # A1 is the answer's first digit

        def carry(text: str, column: int) -> int:
            """Whether column ``column`` (1: hundreds … 3: units) passes a carry to the next one left."""
            d, incoming = digits(text), 0
            for c in range(3, column - 1, -1):
                incoming = int(d[f"F{c}"] + d[f"S{c}"] + incoming >= 10)
            return incoming

        found: dict[str, Feature] = {}
        for name in ("F1", "F2", "F3", "S1", "S2", "S3", "A1", "A2", "A3", "A4"):
            found[name] = lambda text, position, name=name: digits(text).get(name)  # a 3-digit sum has no A4
        for c in (1, 2, 3):
            found[f"F{c}+S{c}"] = lambda text, position, c=c: digits(text)[f"F{c}"] + digits(text)[f"S{c}"]
        for c in (1, 2, 3):
            found[f"carry{c}"] = lambda text, position, c=c: carry(text, c)
        for c in (1, 2, 3):
            found[f"{{F{c},S{c}}}"] = lambda text, position, c=c: frozenset(
                (digits(text)[f"F{c}"], digits(text)[f"S{c}"])
            )
        return found

    def contrast(self, text: str, rng: random.Random) -> str:
        """One column's digit pair (hundreds, tens or units, chosen at random) resampled until an
        answer digit changes, the answer keeping its length so that positions line up."""
        a, b, answer = self.operands(text)
        column = rng.randrange(3)
        place = 10 ** (2 - column)
        for _ in range(1000):
            new_a = a - (a // place % 10) * place + rng.randrange(1 if column == 0 else 0, 10) * place
            new_b = b - (b // place % 10) * place + rng.randrange(1 if column == 0 else 0, 10) * place
            total = str(new_a + new_b)
            if total != answer and len(total) == len(answer):
                return self.format(new_a, new_b)
        raise UserError(f"{text!r}: no resampled digit pair changes the answer at its length")

    def validate(self, text: str) -> None:
        super().validate(text)
        self.operands(text)

    def is_heldout(self, text: str) -> bool:
        try:
            a, b, _ = self.operands(text)
        except UserError:
            return False
        return bool(self._heldout_mask[a - LOW, b - LOW])

    def answer(self, text: str, source: str, *, target: str | None = None, **_) -> Answer:
        """One answer digit (``target``, by default the first where the two inputs differ) against the
        source's digit, at the position that predicts it."""
        digit = target or next((d for d in ANSWER_DIGITS if self._differs(text, source, d)), None)
        if digit not in ANSWER_DIGITS or digit not in self.named_positions(text):
            raise UserError(f"`target` {digit}: use one of A1-A4 that both inputs have, where their answers differ")
        at = self.named_positions(text)[digit] - 1
        ids, source_ids = self.encode(text), self.encode(source)
        return logit_difference(self.tokenizer, at, ids[at + 1], source_ids[at + 1], f"answer digit {digit}")

    def _differs(self, text: str, source: str, digit: str) -> bool:
        mine, theirs = self.named_positions(text), self.named_positions(source)
        return digit in mine and digit in theirs and text[mine[digit] - 1] != source[theirs[digit] - 1]

    def named_positions(self, text: str) -> dict[str, int]:
        n_answer = len(text) - 8
        return {name: i + 1 for i, name in enumerate(POSITION_NAMES[: 8 + n_answer])}

    def target_positions(self, text: str) -> list[int]:
        # '=' predicts A1, each answer digit the next, the last digit predicts EOS.
        return list(range(8, len(text) + 1))

    def query_position_names(self) -> list[str]:
        return list(POSITION_NAMES)

    def annotate(self, text: str) -> str | None:
        try:
            a, b, c = self.operands(text)
        except UserError:
            return "malformed"
        return "correct sum" if int(c) == a + b else f"wrong sum (true {a + b})"

    def enumerate_texts(self) -> list[str] | None:
        return [self.format(a, b) for a in range(LOW, HIGH + 1) for b in range(LOW, HIGH + 1)]

    def enumerate_ids(self) -> torch.Tensor:
        """Token ids of ``enumerate_texts()``, in the same order, built without a Python loop."""
        a = torch.arange(LOW, HIGH + 1).repeat_interleave(HIGH - LOW + 1)
        b = torch.arange(LOW, HIGH + 1).repeat(HIGH - LOW + 1)
        total = a + b
        digit = self.tokenizer.vocab.index  # digits' ids, looked up so any vocabulary order works
        digit_ids = torch.tensor([digit(str(d)) for d in range(10)])
        tok = self.tokenizer
        ids = torch.full((len(a), self.max_len), tok.pad_id, dtype=torch.long)
        ids[:, 0] = tok.bos_id
        for k, power in enumerate((100, 10, 1)):
            ids[:, 1 + k] = digit_ids[a // power % 10]
            ids[:, 5 + k] = digit_ids[b // power % 10]
        ids[:, 4] = digit("+")
        ids[:, 8] = digit("=")
        four = total >= 1000
        for k, power in enumerate((1000, 100, 10, 1)):
            ids[four, 9 + k] = digit_ids[total[four] // power % 10]
        for k, power in enumerate((100, 10, 1)):
            ids[~four, 9 + k] = digit_ids[total[~four] // power % 10]
        ids[four, 13] = tok.eos_id
        ids[~four, 12] = tok.eos_id
        return ids
