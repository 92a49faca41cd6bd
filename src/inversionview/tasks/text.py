"""Free text: inputs are chunks of a corpus, read by a model's own tokenizer.

Decoder training draws its inputs from a corpus file (``train-decoder --corpus FILE``): plain text,
one input per line, or JSON Lines with a ``"text"`` field.
"""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path

from inversionview.errors import UserError, first_line
from inversionview.tasks.base import Feature, Task
from inversionview.tasks.registry import register_task
from inversionview.tasks.tokenizer import Tokenizer

log = logging.getLogger(__name__)

DEFAULT_MAX_LEN = 64


@register_task
class TextTask(Task):
    """Any text; the probed model's job is the next token everywhere."""

    name = "text"
    reads_corpus = True

    @classmethod
    def build(cls, tokenizer: Tokenizer | None = None, *, max_len: int = DEFAULT_MAX_LEN) -> TextTask:
        if tokenizer is None:
            raise UserError("the text task needs the model's own tokenizer")
        return cls(tokenizer, max_len=max_len)

    def __init__(self, tokenizer: Tokenizer, max_len: int = DEFAULT_MAX_LEN, corpus: list[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.use_corpus(corpus or [])

    def use_corpus(self, corpus: list[str]) -> None:
        """Draw inputs from ``corpus`` from now on, split once into train and held-out lines."""
        self.corpus = corpus
        self._split = {"train": [t for t in corpus if not self.is_heldout(t)], "any": corpus}
        self._split["heldout"] = [t for t in corpus if self.is_heldout(t)]
        self._training_tokens: set[int] | None = None  # read from the lines on first use

    def sample_text(self, rng: random.Random) -> str:
        return self.sample_texts(rng, 1, split="any")[0]

    def sample_texts(self, rng: random.Random, n: int, split: str = "train", *, decoder: bool = False) -> list[str]:
        """Lines of the corpus; the decoder holds out the same lines as the probed model."""
        if not self.corpus:
            raise UserError("free-text inputs come from a corpus: pass `corpus` FILE")
        pool = self._split[split]
        if not pool:
            raise UserError(f"the corpus has no {split} lines (1 line in 10 is held out): give it more lines")
        return [pool[rng.randrange(len(pool))] for _ in range(n)]

    def training_tokens(self) -> set[int] | None:
        if not self.corpus:
            return None
        if self._training_tokens is None:  # a run asks when it builds its decoder and when it resumes
            self._training_tokens = {self.tokenizer.eos_id}
            for line in self._split["train"]:
                self._training_tokens.update(self.tokenizer.encode(line))
        return set(self._training_tokens)

    def named_positions(self, text: str) -> dict[str, int]:
        return {}

    def features(self) -> dict[str, Feature]:
        """The token at the position read, the 1-3 tokens before it, and the length."""

        def tokens(text: str, position: int, back: int) -> tuple[str, ...]:
            ids = self.tokenizer.encode(text)  # position p (BOS = 0) is ids[p - 1]
            if position - back < 1 or position > len(ids):
                return ()
            return tuple(self.tokenizer.token_str(t) for t in ids[position - 1 - back : position])  # as shown

        found: dict[str, Feature] = {"token": lambda text, position: tokens(text, position, 0)}
        for back in (1, 2, 3):
            found[f"previous {back}"] = lambda text, position, back=back: tokens(text, position, back)[:back]
        return found | {"length": lambda text, position: len(self.tokenizer.encode(text))}

    def target_positions(self, text: str) -> list[int]:
        return list(range(len(self.tokenizer.encode(text)) + 1))


def load_dataset_texts(spec: str, tokenizer: Tokenizer, max_len: int, field: str = "text") -> list[str]:
    """Inputs from a Hugging Face dataset, ``NAME`` or ``NAME:SPLIT`` (default split: train), chunked
    like a corpus file. Needs the ``datasets`` package and the hub or a local dataset cache."""
    name, _, split = spec.partition(":")
    try:
        import datasets
    except ImportError:
        raise UserError("`dataset` needs the datasets package: pip install datasets") from None
    try:
        rows = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # the library raises many kinds; the user needs the first line of any
        raise UserError(f"`dataset` {spec}: cannot load it ({first_line(exc)})") from None
    texts = [row[field] for row in rows if isinstance(row.get(field), str) and row[field].strip()]
    if not texts:
        raise UserError(f"`dataset` {spec}: no text in field {field!r}")
    return _fit(texts, tokenizer, max_len, f"dataset {spec}")


def load_corpus(path: Path, tokenizer: Tokenizer, max_len: int) -> list[str]:
    """Inputs from a text or JSON Lines file, each at most ``max_len - 2`` tokens (BOS and EOS added).

    A longer line is split at word boundaries into chunks that fit, and the log says how many were.
    """
    if not path.is_file():
        raise UserError(f"corpus {path} does not exist")
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"corpus {path} is not UTF-8 (byte {exc.start} cannot be decoded)") from None
    lines = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                record = json.loads(line)
                line = record["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f'corpus {path}, line {number}: expected a JSON object with a "text" field') from None
            if not isinstance(line, str) or not line.strip():
                continue
        lines.append(line)
    if not lines:
        raise UserError(f"corpus {path} holds no text")
    return _fit(lines, tokenizer, max_len, f"corpus {path}")


def _fit(lines: list[str], tokenizer: Tokenizer, max_len: int, source: str) -> list[str]:
    """Lines as inputs of at most ``max_len - 2`` tokens: longer ones split at spaces. Lines with
    characters the tokenizer cannot spell (a WordPiece vocabulary maps another script to [UNK]) are
    left out and counted: a decoder could never write them back."""
    limit = max_len - 2
    encoded, unknown = _spellable([(line, tokenizer.encode(line)) for line in lines], tokenizer)
    if unknown:
        log.warning("%s: %d line(s) hold characters the tokenizer maps to its unknown token; left out", source, unknown)
    if not encoded:
        raise UserError(f"{source}: every line holds characters the tokenizer cannot spell (another script?)")
    texts, split = [], 0
    for line, ids in encoded:
        if len(ids) <= limit:
            texts.append(line)
            continue
        split += 1
        texts.extend(_chunks(line, tokenizer, limit))
    if split:
        log.warning("%s: %d line(s) longer than %d tokens were split into chunks", source, split, limit)
    if not texts:
        raise UserError(f"{source}: no line fits in {limit} tokens, even split at spaces")
    return texts


def _spellable(encoded: list[tuple[str, list[int]]], tokenizer: Tokenizer) -> tuple[list[tuple[str, list[int]]], int]:
    """The (line, token ids) the tokenizer spells without its unknown token, and how many it cannot."""
    unk = getattr(tokenizer, "unk_id", None)
    if unk is None or unk in (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id):
        return encoded, 0  # byte-level tokenizers spell everything
    kept = [(line, ids) for line, ids in encoded if unk not in ids]
    return kept, len(encoded) - len(kept)


def fortunes(directory: Path) -> list[str]:
    """The quotations of a ``fortune`` database (Debian's ``fortunes`` package: files of quotations
    separated by lines holding ``%``), one a line, whitespace collapsed. Pictures drawn in
    characters (``ascii-art``) are not text and are left out."""
    if not directory.is_dir():
        raise UserError(f"{directory} is not a folder of fortune files (apt install fortunes)")
    quotes = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix in (".dat", ".u8") or path.name in NOT_PROSE:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        quotes.extend(" ".join(q.split()) for q in re.split(r"^%\s*$", text, flags=re.M))
    quotes = [q for q in quotes if q]
    if not quotes:
        raise UserError(f"{directory} holds no fortune quotations")
    return quotes


NOT_PROSE = ("ascii-art",)


def _chunks(line: str, tokenizer: Tokenizer, limit: int) -> list[str]:
    """Split at spaces into pieces of at most ``limit`` tokens; a single word too long is dropped."""
    pieces, current = [], ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(tokenizer.encode(candidate)) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(current)
        current = word if len(tokenizer.encode(word)) <= limit else ""
    if current:
        pieces.append(current)
    return pieces
