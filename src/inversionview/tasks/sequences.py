"""Token-sequence tasks: inputs are sequences over a token list the user gives, for the small
algorithmic models (toy transformers, compiled programs) where an exact preimage is cheap.

``--task sequences --tokens BOS,a,b,c,pad --bos BOS --pad pad --length 2-5``: an input is 2 to 5
tokens drawn uniformly (or by a generator file that defines ``sample(rng) -> list[str]``), written
``a b a c`` or, when every token is one character, ``abac``; BOS goes in front (position 0).
"""

from __future__ import annotations

import importlib.util
import itertools
import random
from collections.abc import Callable
from pathlib import Path

from inversionview.errors import UserError, first_line
from inversionview.tasks.base import Feature, Task
from inversionview.tasks.registry import register_task
from inversionview.tasks.tokenizer import SequenceTokenizer, Tokenizer

MAX_LISTED = 1_000_000
"""Spaces of at most this many inputs are listed whole for exact preimages; larger ones are sampled."""


def parse_length(length: str | int) -> tuple[int, int]:
    """``5`` or ``"2-5"``: the shortest and longest input, in tokens."""
    text = str(length)
    low, _, high = text.partition("-")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise UserError(f"length {text!r}: give a number of tokens (5) or a range (2-5)") from None
    if bounds[0] < 1 or bounds[1] < bounds[0]:
        raise UserError(f"length {text!r}: an input has at least 1 token, and a range runs upwards")
    return bounds


def load_generator(path: str | Path) -> Callable[[random.Random], list[str]]:
    """The ``sample(rng) -> list[str]`` function a generator file defines."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"inversionview_inputs_{path.stem}", path)
    if not path.is_file() or spec is None or spec.loader is None:
        raise UserError(f"inputs {path}: no such Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's own file: any error in it is theirs to see in one line
        raise UserError(f"inputs {path}: {type(exc).__name__}: {first_line(exc)}") from None
    if not callable(getattr(module, "sample", None)):
        raise UserError(f"inputs {path} defines no function sample(rng) -> list[str]")
    return module.sample


@register_task
class SequencesTask(Task):
    """Sequences over a token list; the probed model's job is the next token at every position."""

    name = "sequences"

    def __init__(self, tokenizer: SequenceTokenizer, length: str | int = 5, inputs: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.length, self.inputs = str(length), inputs
        self.shortest, self.longest = parse_length(length)
        self.max_len = self.longest + 2
        self._generator = load_generator(inputs) if inputs else None

    @classmethod
    def build(
        cls,
        tokenizer: Tokenizer | None = None,
        *,
        tokens: str | list[str] | None = None,
        bos: str | None = None,
        pad: str | None = None,
        eos: str | None = None,
        length: str | int = 5,
        inputs: str | None = None,
    ) -> SequencesTask:
        if tokens is not None:
            listed = tokens.split(",") if isinstance(tokens, str) else list(tokens)
            if bos is None or pad is None:
                raise UserError("a sequences task needs bos and pad, two tokens of its list")
            tokenizer = SequenceTokenizer(tuple(listed), bos, pad, eos)
        if not isinstance(tokenizer, SequenceTokenizer):
            raise UserError("a sequences task needs its tokens (`tokens` BOS,a,b,pad `bos` BOS `pad` pad)")
        return cls(tokenizer, length, inputs)

    def options(self) -> dict:
        return {"length": self.length, **({"inputs": self.inputs} if self.inputs else {})}

    def sample_text(self, rng: random.Random) -> str:
        if self._generator is None:
            length = rng.randint(self.shortest, self.longest)
            return self.tokenizer.write([rng.choice(self.tokenizer.text_tokens) for _ in range(length)])
        drawn = self._generator(rng)
        allowed = self.tokenizer.text_tokens
        stray = next((t for t in drawn if t not in allowed), None) if isinstance(drawn, list) else drawn
        if stray is not None or not isinstance(drawn, list):
            raise UserError(f"inputs {self.inputs}: sample() returned {stray!r}, not a token of {', '.join(allowed)}")
        text = self.tokenizer.write(drawn)
        self.validate(text)
        return text

    def validate(self, text: str) -> None:
        n = len(self.tokenizer.encode(text))
        if not self.shortest <= n <= self.longest:
            raise UserError(f"{text!r} has {n} tokens; this task's inputs have {self.length}")

    def named_positions(self, text: str) -> dict[str, int]:
        return {"last": len(self.tokenizer.encode(text))}

    def target_positions(self, text: str) -> list[int]:
        return list(range(len(self.tokenizer.encode(text))))

    def features(self) -> dict[str, Feature]:
        split, tokens = self.tokenizer.split, self.tokenizer.text_tokens

        def at(text: str, position: int) -> str:
            return ([self.tokenizer.bos, *split(text)] + [""] * self.max_len)[position]

        features: dict[str, Feature] = {"length": lambda text, position: len(split(text)), "token read": at}
        for i in range(1, self.longest + 1):
            features[f"token {i}"] = lambda text, position, i=i: at(text, i)
        for token in tokens:
            features[f"count of {token} so far"] = lambda text, position, t=token: split(text)[:position].count(t)
            features[f"count of {token}"] = lambda text, position, t=token: split(text).count(t)
        return features

    def contrast(self, text: str, rng: random.Random) -> str:
        """The same input with one token, drawn at random, replaced by another token."""
        tokens, others = self.tokenizer.split(text), self.tokenizer.text_tokens
        if len(others) < 2:
            raise UserError("a contrast input needs at least two tokens to choose from")
        at = rng.randrange(len(tokens))
        tokens[at] = rng.choice([t for t in others if t != tokens[at]])
        return self.tokenizer.write(tokens)

    def space_size(self) -> int:
        n = len(self.tokenizer.text_tokens)
        return sum(n**length for length in range(self.shortest, self.longest + 1))

    def enumerate_texts(self) -> list[str] | None:
        if self._generator is not None or self.space_size() > MAX_LISTED:
            return None
        tokens, write = self.tokenizer.text_tokens, self.tokenizer.write
        lengths = range(self.shortest, self.longest + 1)
        return [write(list(seq)) for length in lengths for seq in itertools.product(tokens, repeat=length)]
