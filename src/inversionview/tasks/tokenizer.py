"""Tokenizers: map text to token ids and back, with BOS/EOS/PAD ids.

Every tokenizer wraps a sequence as ``BOS + text tokens + EOS``. Position 0 is BOS; positions that
a user may query are BOS and the text tokens (EOS only marks the end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from inversionview.errors import UserError, first_line


class Tokenizer(Protocol):
    """What the rest of the library needs from a tokenizer."""

    bos_id: int
    eos_id: int
    pad_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS; raises UserError on text it cannot encode."""
        ...

    def token_str(self, token_id: int) -> str:
        """A readable form of one token, as shown to users."""
        ...

    def decode(self, ids: list[int]) -> str:
        """The text of ids, skipping BOS, EOS and PAD."""
        ...

    def to_dict(self) -> dict: ...


@dataclass(frozen=True)
class CharTokenizer:
    """One token per character: the id of a character is its index in ``vocab``.

    ``bos``, ``eos`` and ``pad`` are characters of ``vocab`` that stand for the special tokens, so
    ``"abc|:BEP"`` with ``bos="B"`` is a vocabulary whose B is never a text character.
    """

    vocab: str
    bos: str
    eos: str
    pad: str

    def __post_init__(self) -> None:
        if len(set(self.vocab)) != len(self.vocab):
            raise UserError(f"vocabulary {self.vocab!r} repeats a character")
        for role, char in (("bos", self.bos), ("eos", self.eos), ("pad", self.pad)):
            if len(char) != 1 or char not in self.vocab:
                raise UserError(f"--{role} {char!r} must be one character of the vocabulary {self.vocab!r}")
        if len({self.bos, self.eos, self.pad}) != 3:
            raise UserError("BOS, EOS and PAD must be three different characters")

    @property
    def bos_id(self) -> int:
        return self.vocab.index(self.bos)

    @property
    def eos_id(self) -> int:
        return self.vocab.index(self.eos)

    @property
    def pad_id(self) -> int:
        return self.vocab.index(self.pad)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def text_chars(self) -> str:
        """The characters that may appear in text (the vocabulary less the special tokens)."""
        return "".join(c for c in self.vocab if c not in (self.bos, self.eos, self.pad))

    def encode(self, text: str) -> list[int]:
        allowed = self.text_chars
        for i, char in enumerate(text):
            if char not in allowed:
                raise UserError(f"character {char!r} at index {i} of {text!r} is not in the vocabulary {allowed!r}")
        return [self.vocab.index(c) for c in text]

    def token_str(self, token_id: int) -> str:
        if token_id == self.bos_id:
            return "<BOS>"
        if token_id == self.eos_id:
            return "<EOS>"
        if token_id == self.pad_id:
            return "<PAD>"
        return self.vocab[token_id]

    def decode(self, ids: list[int]) -> str:
        special = {self.bos_id, self.eos_id, self.pad_id}
        return "".join(self.vocab[i] for i in ids if i not in special)

    def to_dict(self) -> dict:
        return {"kind": "char", "vocab": self.vocab, "bos": self.bos, "eos": self.eos, "pad": self.pad}


@dataclass(frozen=True)
class SequenceTokenizer:
    """Tokens from a list (id = index in the list), written separated by spaces (``a b a``), or run
    together when every token is one character (``aba``). ``bos`` and ``pad`` are tokens of the list;
    ``eos`` too, or, when the list has none, the padding ends an input."""

    tokens: tuple[str, ...]
    bos: str
    pad: str
    eos: str | None = None

    def __post_init__(self) -> None:
        repeated = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
        if repeated:
            raise UserError(f"the token list repeats {', '.join(map(repr, repeated))}: each token once")
        if any(not t or any(c.isspace() for c in t) for t in self.tokens):
            raise UserError("a token must be non-empty and hold no spaces")
        for role, token in (("bos", self.bos), ("pad", self.pad), ("eos", self.eos)):
            if token is not None and token not in self.tokens:
                raise UserError(f"{role} {token!r} is not one of the tokens {', '.join(self.tokens)}")
        roles = [self.bos, self.pad] + ([self.eos] if self.eos is not None else [])
        if len(set(roles)) != len(roles):
            raise UserError("bos, pad and eos must be different tokens")

    @property
    def bos_id(self) -> int:
        return self.tokens.index(self.bos)

    @property
    def pad_id(self) -> int:
        return self.tokens.index(self.pad)

    @property
    def eos_id(self) -> int:
        return self.tokens.index(self.eos) if self.eos is not None else self.pad_id

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def text_tokens(self) -> list[str]:
        """The tokens an input may hold (the list less BOS, PAD and EOS)."""
        return [t for t in self.tokens if t not in (self.bos, self.pad, self.eos)]

    @property
    def run_together(self) -> bool:
        return all(len(t) == 1 for t in self.text_tokens)

    def split(self, text: str) -> list[str]:
        """An input's tokens: separated by spaces, or one a character when every token is one."""
        return list(text) if self.run_together and " " not in text.strip() else text.split()

    def write(self, tokens: list[str]) -> str:
        """Tokens as an input is written."""
        return ("" if self.run_together else " ").join(tokens)

    def encode(self, text: str) -> list[int]:
        allowed = self.text_tokens
        ids = []
        for token in self.split(text):
            if token not in allowed:
                raise UserError(f"token {token!r} of {text!r} is not one of {', '.join(allowed)}")
            ids.append(self.tokens.index(token))
        return ids

    def token_str(self, token_id: int) -> str:
        return self.tokens[token_id]

    def decode(self, ids: list[int]) -> str:
        special = {self.bos_id, self.eos_id, self.pad_id}
        return self.write([self.tokens[i] for i in ids if i not in special])

    def to_dict(self) -> dict:
        return {"kind": "sequence", "tokens": list(self.tokens), "bos": self.bos, "pad": self.pad, "eos": self.eos}


class WordTokenizer:
    """One token per word or punctuation mark, from a fixed word list (id = index)."""

    _TOKEN = re.compile(r"\w+|[^\w\s]")

    def __init__(self, words: list[str], bos: str, eos: str, pad: str) -> None:
        if len(set(words)) != len(words):
            raise UserError("word vocabulary repeats a word")
        self.words = list(words)
        self._index = {w: i for i, w in enumerate(self.words)}
        self.bos_id, self.eos_id, self.pad_id = self._index[bos], self._index[eos], self._index[pad]

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @classmethod
    def split(cls, text: str) -> list[str]:
        return cls._TOKEN.findall(text)

    @staticmethod
    def join(words: list[str]) -> str:
        """Words back to text: no space before punctuation."""
        return "".join(w if not out or not w[0].isalnum() else f" {w}" for out, w in enumerate(words)).strip()

    def id_of(self, word: str) -> int:
        return self._index[word]

    def encode(self, text: str) -> list[int]:
        special = {self.words[i] for i in (self.bos_id, self.eos_id, self.pad_id)}
        ids = []
        for word in self.split(text):
            if word not in self._index or word in special:
                raise UserError(f"word {word!r} is not in the vocabulary of this model")
            ids.append(self._index[word])
        return ids

    def token_str(self, token_id: int) -> str:
        """The word as shown in a row of tokens: a space before words, none before punctuation."""
        word = self.words[token_id]
        special = token_id in (self.bos_id, self.eos_id, self.pad_id)
        return f" {word}" if word[0].isalnum() and not special else word

    def decode(self, ids: list[int]) -> str:
        special = {self.bos_id, self.eos_id, self.pad_id}
        return self.join([self.words[i] for i in ids if i not in special])

    def to_dict(self) -> dict:
        return {
            "kind": "word",
            "words": self.words,
            "bos": self.words[self.bos_id],
            "eos": self.words[self.eos_id],
            "pad": self.words[self.pad_id],
        }


BPE_SPECIALS = ("<BOS>", "<EOS>", "<PAD>", "<UNK>")
WORD_START = "\u2581"
"""How a Metaspace BPE marks a token that starts a word (``▁Aar``)."""


class BPETokenizer:
    """A small byte-pair vocabulary trained on a task's own corpus (Hugging Face ``tokenizers``):
    words split into subword pieces, so that a name spans several tokens as it does in GPT-2.

    Ids 0-3 are ``<BOS>``, ``<EOS>``, ``<PAD>`` and ``<UNK>``; a character the corpus never had
    cannot be encoded. The whole tokenizer is saved in ``to_dict`` so a model's directory is enough
    to load it.
    """

    def __init__(self, serialized: str) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        self._tok = RustTokenizer.from_str(serialized)
        self.serialized = serialized
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = (self._tok.token_to_id(t) for t in BPE_SPECIALS)

    @classmethod
    def train(cls, corpus: list[str], vocab_size: int) -> BPETokenizer:
        """A vocabulary of ``vocab_size`` tokens learnt from ``corpus`` (deterministic)."""
        from tokenizers import Tokenizer as RustTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tok = RustTokenizer(models.BPE(unk_token="<UNK>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
        tok.decoder = decoders.Metaspace(prepend_scheme="always")
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(BPE_SPECIALS), show_progress=False)
        tok.train_from_iterator(corpus, trainer)
        return cls(tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.encode_with_offsets(text)[0]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` and each token's character span in it."""
        encoding = self._tok.encode(text, add_special_tokens=False)
        if self.unk_id in encoding.ids:
            start, end = encoding.offsets[encoding.ids.index(self.unk_id)]
            raise UserError(f"{text[start:end]!r} in {text!r} is not in this model's vocabulary")
        return encoding.ids, encoding.offsets

    def token_str(self, token_id: int) -> str:
        return (self._tok.id_to_token(token_id) or f"<{token_id}>").replace(WORD_START, "␣")

    def decode(self, ids: list[int]) -> str:
        special = {self.bos_id, self.eos_id, self.pad_id}
        return self._tok.decode([i for i in ids if i not in special])

    def to_dict(self) -> dict:
        return {"kind": "bpe", "tokenizer": self.serialized}


HF_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥"}


REPLACEMENT = "\ufffd"
"""What a decoder writes for bytes that are not yet a whole UTF-8 character."""
MAX_UTF8_BYTES = 4


class HFTokenizer:
    """A Hugging Face tokenizer from a local directory (byte-level BPE and the like).

    GPT-2's tokenizer has one special token for BOS, EOS and PAD; the library allows that. An
    encoder's (BERT's WordPiece) has no BOS or EOS: its [CLS] and [SEP] play their parts.
    """

    def __init__(self, directory: str | Path) -> None:
        from transformers import AutoTokenizer

        self.directory = str(directory)
        try:
            self._tok = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the tokenizer in {self.directory}: {first_line(exc)}") from None
        tok = self._tok
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        if eos is None:
            raise UserError(f"the tokenizer in {self.directory} has no EOS (or [SEP]) token")
        self.eos_id = eos
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        self.bos_id = bos if bos is not None else eos
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos
        self.unk_id = tok.unk_token_id
        self.word_pieces = type(tok.backend_tokenizer.model).__name__ == "WordPiece"
        self._specials = set(tok.all_special_ids)  # read once: token_str runs once per token shown

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` and each token's character span in it (a byte-level token's span
        includes the space before its word)."""
        encoding = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return encoding["input_ids"], [tuple(span) for span in encoding["offset_mapping"]]

    def token_str(self, token_id: int) -> str:
        """The token's text, with spaces, newlines and tabs made visible."""
        if token_id == self.bos_id and token_id == self.eos_id:
            return "<|endoftext|>" if token_id == self._tok.eos_token_id else "<BOS>"
        if self.word_pieces:  # "##ing" continues a word; any other piece starts one
            piece = self._tok.convert_ids_to_tokens(token_id)
            if piece.startswith("##"):
                return piece[2:]
            return piece if token_id in self._specials or not piece[0].isalnum() else f"␣{piece}"
        text = self._tok.decode([token_id])
        return "".join(VISIBLE.get(c, c) for c in text) or f"<{token_id}>"

    def decode(self, ids: list[int]) -> str:
        special = {self.bos_id, self.eos_id, self.pad_id}
        return self._tok.decode([i for i in ids if i not in special])

    def token_strs(self, ids: list[int]) -> list[str]:
        """Each token's text as ``token_str`` shows it, except that a character whose UTF-8 bytes
        are split over several tokens (byte-level BPE: ``ö`` may be two) is shown whole on the token
        that completes it, and as "" on those before."""
        shown, pending = [], []
        for token_id in ids:
            candidate = [*pending, token_id]
            text = self._tok.decode(candidate)
            if REPLACEMENT in text and len(candidate) < MAX_UTF8_BYTES and token_id not in (self.bos_id, self.eos_id):
                shown.append("")
                pending = candidate
                continue
            shown.append("".join(VISIBLE.get(c, c) for c in text) if pending else self.token_str(token_id))
            pending = []
        if pending:  # bytes that never completed a character: show what the tokenizer makes of them
            shown[-1] = self._tok.decode(pending)
        return shown

    def to_dict(self) -> dict:
        return {"kind": "hf", "directory": self.directory}


def display_tokens(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """How every view shows the tokens ``ids``: one string a token, non-ASCII text whole."""
    if isinstance(tokenizer, HFTokenizer):
        return tokenizer.token_strs(ids)
    return [tokenizer.token_str(token_id) for token_id in ids]


def has_hf_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in HF_TOKENIZER_FILES)


def tokenizer_from_dict(data: dict) -> Tokenizer:
    """Rebuild a tokenizer saved with ``to_dict``."""
    if data.get("kind") == "char":
        return CharTokenizer(data["vocab"], data["bos"], data["eos"], data["pad"])
    if data.get("kind") == "word":
        return WordTokenizer(data["words"], data["bos"], data["eos"], data["pad"])
    if data.get("kind") == "sequence":
        return SequenceTokenizer(tuple(data["tokens"]), data["bos"], data["pad"], data.get("eos"))
    if data.get("kind") == "hf":
        return HFTokenizer(data["directory"])
    if data.get("kind") == "bpe":
        return BPETokenizer(data["tokenizer"])
    raise UserError(f"unknown tokenizer kind {data.get('kind')!r}")
