"""Which probed model to load, and how: the options that every command reading a model takes, as one
documented config (the command line's flags are written from it, ``options.py``). Torch-free, so that
a bad option is refused before torch loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from inversionview import bundled
from inversionview.errors import UserError

SEQUENCE_OPTIONS = ("tokens", "length", "inputs")
"""The options of a token-list task (``sequences``); with one of them, BOS, EOS and PAD are its tokens."""


@dataclass(frozen=True)
class ProbedSource:
    """A probed model to load: a bundled name or a local directory, and how to read it."""

    probed: str | None = None
    """Bundled model name (default: counting) or a local directory."""
    task: str | None = None
    """Task of a model that has no inversionview.json (e.g. counting)."""
    vocab: str | None = None
    """Character vocabulary, id = index, e.g. 'abc…|:BEP'."""
    tokens: str | None = None
    """Sequences task: the token list, id = index, e.g. BOS,a,b,c,pad."""
    length: str | None = None
    """Sequences task: tokens an input holds, 5 or 2-5 (default 5)."""
    inputs: str | None = None
    """Sequences task: a Python file defining sample(rng) -> list[str]."""
    bos: str | None = None
    """Vocabulary character (or token of `tokens`) that stands for BOS."""
    eos: str | None = None
    """Vocabulary character (or token of `tokens`) that stands for EOS."""
    pad: str | None = None
    """Vocabulary character (or token of `tokens`) that stands for PAD."""
    allow_pickle: bool = False
    """Permit unpickling pytorch_model.bin."""
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Run the probed model in this dtype."""
    device: str = "auto"
    """Where the models run: auto (the GPU when there is one), cpu, cuda or cuda:N."""
    threads: int | None = None
    """CPU threads for torch (default: torch's choice)."""
    corpus: Path | None = None
    """Free-text models: inputs from this file (one a line, or JSONL)."""
    dataset: str | None = None
    """Free-text models: inputs from this Hugging Face dataset, NAME or NAME:SPLIT."""
    dataset_field: str = "text"
    """The dataset's text column."""
    max_tokens: int | None = None
    """Free-text models: the longest input in tokens, BOS and EOS included (default 64, or the model's context)."""

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UserError(f"`threads` must be at least 1, got {self.threads}")
        if self.max_tokens is not None and self.max_tokens < 3:
            raise UserError(f"`max_tokens` must be at least 3 (BOS, a token, EOS), got {self.max_tokens}")
        if self.corpus is not None and self.dataset is not None:
            raise UserError("give `corpus` or `dataset`, not both")

    @property
    def name(self) -> str:
        """The model's name or directory as given (the bundled default when none is)."""
        return self.probed or bundled.DEFAULT

    def load_options(self) -> dict:
        """The keyword arguments of ``load_probed`` (a token list makes BOS, EOS and PAD its options)."""
        options = {k: v for k, v in asdict(self).items() if k in ("task", "vocab", "bos", "eos", "pad")}
        options |= {"allow_pickle": self.allow_pickle, "dtype": self.dtype, "device": self.device}
        task_options = {name: getattr(self, name) for name in SEQUENCE_OPTIONS if getattr(self, name) is not None}
        if task_options:
            task_options |= {name: options.pop(name) for name in ("bos", "eos", "pad") if options[name] is not None}
            options["task_options"] = task_options
        return options

    def corpus_options(self) -> dict:
        """The corpus, as ``ProbedModel.use_corpus`` takes it (none: no corpus)."""
        if self.corpus is None and self.dataset is None:
            return {}
        path = str(self.corpus.resolve()) if self.corpus is not None else None
        return {"path": path, "dataset": self.dataset, "field": self.dataset_field, "max_len": self.max_tokens}

    def check(self) -> None:
        """Refuse a name that is neither bundled, a folder, nor the shape of a hub name: torch-free, so
        the command line asks before anything loads (``load_probed`` resolves the name itself)."""
        if not looks_like_hub_name(self.name):
            probed_directory(self.name)

    def load(self):
        """The probed model (torch's threads set first, the corpus attached)."""
        from inversionview.probed.model import load_probed

        set_threads(self.threads)
        probed = load_probed(self.name, **self.load_options())
        if corpus := self.corpus_options():
            probed.use_corpus(**corpus)
        return probed


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads in torch (None: torch's own choice)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]


def probed_directory(name_or_dir: str) -> Path:
    """A bundled name, a local directory, or a Hugging Face hub name (``gpt2``, ``gpt2-medium``…),
    fetched to or read from the local Hugging Face cache (safetensors only)."""
    path = bundled.probed_dir(name_or_dir)
    if path is not None:
        return path
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if looks_like_hub_name(name_or_dir):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            return Path(snapshot_download(name_or_dir, allow_patterns=HUB_FILES))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
            pass
    known = ", ".join(bundled.probed_names()) or "none"
    raise UserError(
        f"no probed model {name_or_dir!r}: not a bundled name ({known}), a directory, "
        "nor a model on the Hugging Face hub or in its local cache"
    )


def looks_like_hub_name(name: str) -> bool:
    """Whether ``name`` could name a model on the Hugging Face hub (``gpt2``, ``org/model``)."""
    return bool(name) and not name.startswith((".", "/", "~")) and name.count("/") <= 1
