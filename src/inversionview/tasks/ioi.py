"""Indirect-object identification (IOI): ``Then, Mary and John went to the store. John gave a drink to``.

Sentences come from templates with two names: the subject S appears twice (S1, S2), the indirect
object IO once, and the model should continue with IO at the last token (END). Both orders are drawn:
ABBA (IO first) and BABA (S first). One token per word or punctuation mark.

Positions (BOS = 0): ``S1``, ``S1+1``, ``IO``, ``S2`` and ``END``. A text may include the answer (the IO
name after END, as in training) or stop at END (as a query usually does).
"""

from __future__ import annotations

import random
import re

import torch

from inversionview.errors import UserError
from inversionview.tasks.base import Answer, Feature, Task, logit_difference
from inversionview.tasks.registry import register_task
from inversionview.tasks.tokenizer import WordTokenizer

NAMES = (
    "Mary",
    "John",
    "Alice",
    "Bob",
    "Sarah",
    "Tom",
    "Emma",
    "James",
    "Laura",
    "David",
    "Anna",
    "Paul",
    "Kate",
    "Mark",
    "Lisa",
    "Peter",
    "Julia",
    "Chris",
    "Nina",
    "Sam",
)
PLACES = ("store", "park", "school", "office", "garden", "station", "restaurant", "hospital", "library", "beach")
OBJECTS = ("drink", "book", "ball", "gift", "letter", "key", "flower", "ring", "bag", "cake")
# {A} and {B} are the two names in order of appearance; {S} is the subject's second mention.
TEMPLATES = (
    "Then , {A} and {B} went to the {PLACE} . {S} gave a {OBJECT} to",
    "When {A} and {B} went to the {PLACE} , {S} gave a {OBJECT} to",
    "After {A} and {B} arrived at the {PLACE} , {S} handed a {OBJECT} to",
    "While {A} and {B} were at the {PLACE} , {S} passed a {OBJECT} to",
)
SPECIALS = ("<BOS>", "<EOS>", "<PAD>")
POSITION_NAMES = ("S1", "S1+1", "IO", "S2", "END")


def _vocabulary() -> list[str]:
    words = {w for t in TEMPLATES for w in t.split() if not w.startswith("{")}
    return [*SPECIALS, *sorted(words), *NAMES, *PLACES, *OBJECTS]


@register_task
class IOITask(Task):
    name = "ioi"
    max_len = 1 + 20 + 1

    def __init__(self, tokenizer: WordTokenizer | None = None) -> None:
        self.tokenizer = tokenizer or WordTokenizer(_vocabulary(), *SPECIALS)

    def sample_text(self, rng: random.Random) -> str:
        io, subject = rng.sample(NAMES, 2)
        first, second = (io, subject) if rng.random() < 0.5 else (subject, io)  # ABBA or BABA
        template = rng.choice(TEMPLATES)
        prompt = template.format(A=first, B=second, S=subject, PLACE=rng.choice(PLACES), OBJECT=rng.choice(OBJECTS))
        return WordTokenizer.join(f"{prompt} {io}".split())

    def parse(self, text: str) -> tuple[list[str], dict[str, int], str | None]:
        """The words of ``text``, its named positions (BOS = 0), and its answer word if present."""
        words = WordTokenizer.split(text)
        for template in TEMPLATES:
            slots = template.split()
            if len(words) not in (len(slots), len(slots) + 1):
                continue
            values: dict[str, str] = {}
            if all(_fits(slot, word, values) for slot, word in zip(slots, words)):
                if values["S"] not in (values["A"], values["B"]) or values["A"] == values["B"]:
                    continue
                s1 = slots.index("{A}") if values["S"] == values["A"] else slots.index("{B}")
                io = slots.index("{B}") if values["S"] == values["A"] else slots.index("{A}")
                positions = {
                    "S1": s1 + 1,
                    "S1+1": s1 + 2,
                    "IO": io + 1,
                    "S2": slots.index("{S}") + 1,
                    "END": len(slots),
                }
                return words, positions, words[len(slots)] if len(words) > len(slots) else None
        raise UserError(
            f"{text!r} is not an IOI sentence like 'Then, Mary and John went to the store. John gave a drink to'"
        )

    def validate(self, text: str) -> None:
        super().validate(text)
        self.parse(text)

    def features(self) -> dict[str, Feature]:
        def word(text: str, name: str) -> str:
            words, positions, _ = self.parse(text)
            return words[positions[name] - 1]

        def slot(text: str, kind: str) -> str:
            words, positions, _ = self.parse(text)
            return next(w for w in words if w in (PLACES if kind == "place" else OBJECTS))

        return {
            "IO": lambda text, position: word(text, "IO"),
            "S": lambda text, position: word(text, "S1"),
            "order": lambda text, position: "ABBA" if self.parse(text)[1]["IO"] < self.parse(text)[1]["S1"] else "BABA",
            "place": lambda text, position: slot(text, "place"),
            "object": lambda text, position: slot(text, "object"),
        }

    def contrast(self, text: str, rng: random.Random) -> str:
        """The same sentence with both names replaced by two others (the usual "ABC" contrast): it
        says nothing about which of the input's names is the indirect object."""
        words, positions, _ = self.parse(text)
        io, subject = words[positions["IO"] - 1], words[positions["S1"] - 1]
        new_io, new_subject = rng.sample([name for name in NAMES if name not in (io, subject)], 2)
        swap = {io: new_io, subject: new_subject}
        return WordTokenizer.join([swap.get(word, word) for word in words])

    def answer(self, text: str, source: str, **_) -> Answer:
        """The indirect object against the subject, at END."""
        named, ids = self.named_positions(text), self.encode(text)
        return logit_difference(self.tokenizer, named["END"], ids[named["IO"]], ids[named["S1"]], "IO against S")

    def named_positions(self, text: str) -> dict[str, int]:
        return self.parse(text)[1]

    def target_positions(self, text: str) -> list[int]:
        _, positions, answer = self.parse(text)
        return [positions["END"]] if answer is not None else []

    def query_position_names(self) -> list[str]:
        return list(POSITION_NAMES)

    def annotate(self, text: str) -> str | None:
        try:
            words, positions, answer = self.parse(text)
        except UserError:
            return "not an IOI sentence"
        io = words[positions["IO"] - 1]
        order = "ABBA" if positions["IO"] < positions["S1"] else "BABA"
        return f"{order}, IO = {io}" + ("" if answer in (None, io) else f" (continues with {answer})")

    def judge(self, texts: list[str], ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Correct where the IO name's logit beats the subject's at END."""
        tok = self.tokenizer
        correct = []
        for row, text in enumerate(texts):
            words, positions, _ = self.parse(text)
            io, subject = words[positions["IO"] - 1], words[positions["S2"] - 1]
            end_logits = logits[row, positions["END"]]
            correct.append(bool(end_logits[tok.id_of(io)] > end_logits[tok.id_of(subject)]))
        return torch.tensor(correct)


def _fits(slot: str, word: str, values: dict[str, str]) -> bool:
    match = re.fullmatch(r"\{(\w+)\}", slot)
    if match is None:
        return slot == word
    kind = match[1]
    allowed = {"A": NAMES, "B": NAMES, "S": NAMES, "PLACE": PLACES, "OBJECT": OBJECTS}[kind]
    values[kind] = word
    return word in allowed
