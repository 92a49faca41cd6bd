"""Character counting: ``vvzccvczvv|v:5``.

Three distinct letters, each repeated 1-9 times and shuffled; then ``|``, one of the three letters,
``:`` and how many times that letter occurs. The probed model predicts the count at ``:``.
"""

from __future__ import annotations

import random
import string

from inversionview.errors import UserError
from inversionview.tasks.base import Answer, Feature, Task, logit_difference
from inversionview.tasks.registry import register_task
from inversionview.tasks.tokenizer import CharTokenizer

VOCAB = string.ascii_lowercase + "123456789|:" + "BEP"


@register_task
class CountingTask(Task):
    name = "counting"
    max_len = 1 + 27 + 4 + 1

    def __init__(self, tokenizer: CharTokenizer | None = None) -> None:
        self.tokenizer = tokenizer or CharTokenizer(VOCAB, bos="B", eos="E", pad="P")

    def sample_text(self, rng: random.Random) -> str:
        letters = rng.sample(string.ascii_lowercase, 3)
        counts = [rng.randint(1, 9) for _ in letters]
        chars = [c for c, n in zip(letters, counts) for _ in range(n)]
        rng.shuffle(chars)
        pick = rng.randrange(3)
        return "".join(chars) + f"|{letters[pick]}:{counts[pick]}"

    def _split(self, text: str) -> tuple[str, str, str]:
        body, bar, rest = text.partition("|")
        if not bar or len(rest) != 3 or rest[1] != ":":
            raise UserError(f"{text!r} is not a counting input like 'vvzccvczvv|v:5'")
        return body, rest[0], rest[2]

    def validate(self, text: str) -> None:
        super().validate(text)
        self._split(text)

    def features(self) -> dict[str, Feature]:
        def body(text: str) -> str:
            return self._split(text)[0]

        return {
            "query_letter": lambda text, position: self._split(text)[1],
            "count": lambda text, position: body(text).count(self._split(text)[1]),
            "n_distinct": lambda text, position: len(set(body(text))),
            "length": lambda text, position: len(body(text)),
        }

    def contrast(self, text: str, rng: random.Random) -> str:
        """One letter before ``|`` changed so that the query letter's count changes (by one), the
        input keeping three letters: the source answers a different count at ``:``."""
        body, letter, _ = self._split(text)
        others = sorted(set(body) - {letter})
        candidates = [
            (i, new)
            for i, old in enumerate(body)
            for new in ([o for o in others if o != old] if old == letter else [letter])
            if body.count(old) > 1 and (body.count(letter) + (1 if new == letter else -1)) in range(1, 10)
        ]
        if not candidates:
            raise UserError(f"{text!r}: no one-letter change keeps it a counting input and changes the count")
        i, new = rng.choice(candidates)
        changed = body[:i] + new + body[i + 1 :]
        return f"{changed}|{letter}:{changed.count(letter)}"

    def answer(self, text: str, source: str, **_) -> Answer:
        """The count after ``:`` against the source's count."""
        at = self.named_positions(text)[":"]
        return logit_difference(self.tokenizer, at, self.encode(text)[at + 1], self.encode(source)[at + 1], "the count")

    def named_positions(self, text: str) -> dict[str, int]:
        bar = text.index("|") + 1  # +1 for BOS
        return {"|": bar, "query letter": bar + 1, ":": bar + 2, "count": bar + 3}

    def target_positions(self, text: str) -> list[int]:
        return [self.named_positions(text)[":"]]

    def query_position_names(self) -> list[str]:
        return ["query letter", ":"]

    def annotate(self, text: str) -> str | None:
        try:
            body, letter, count = self._split(text)
        except UserError:
            return "malformed"
        true = body.count(letter)
        return f"count of {letter!r} = {true}" + ("" if str(true) == count else f" (input says {count})")
