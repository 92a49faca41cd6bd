"""The probed model: a Hugging Face causal LM (GPT-2, GPT-Neo(X), GPT-J, Llama-shaped) or encoder
(BERT, RoBERTa, DistilBERT), and its task.

One way to load a model: ``load_probed`` takes a bundled name or a local directory in the Hugging
Face layout (``config.json`` + ``model.safetensors``, or ``pytorch_model.bin`` with ``allow_pickle``).
Our own models add ``inversionview.json`` (task, vocabulary, content hash, provenance); for other
people's models the task and vocabulary come from the caller.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from inversionview import bundled
from inversionview.errors import UserError, first_line
from inversionview.probed.layouts import Layout, layout_for, submodule
from inversionview.probed.sites import Site, all_sites, parse_site, run_with_sites
from inversionview.storage import (
    HF_CONFIG_FILE,
    HF_PICKLE_FILE,
    PROBED_META_FILE,
    WEIGHTS_FILE,
    file_hash,
    read_json,
    write_json,
)
from inversionview.tasks import CharTokenizer, HFTokenizer, Task, TextTask, get_task, pad_batch, tokenizer_from_dict
from inversionview.tasks.text import DEFAULT_MAX_LEN, load_corpus, load_dataset_texts
from inversionview.tasks.tokenizer import display_tokens, has_hf_tokenizer

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(name: str | None) -> torch.device:
    """``"auto"`` (or None): the GPU when there is one, else the CPU; otherwise a torch device name."""
    if name in (None, "auto", "cuda") and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # torchrun: one GPU per process
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "meta":
        raise UserError("--device meta holds no values; use auto, cpu, cuda or cuda:N")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, NotImplementedError) as exc:  # a CPU-only build asserts
        raise UserError(f"--device {name}: not available here ({first_line(exc)})") from None
    return device


@dataclass
class ProbedModel:
    """A causal LM whose activations we read, with its task and a hash that names its weights.

    The model may live on a GPU; token ids go in and activations come out on the CPU, so that the
    rest of the library handles plain CPU tensors whatever the device.
    """

    model: GPT2LMHeadModel
    task: Task
    content_hash: str
    source: str
    meta: dict = field(default_factory=dict)
    directory: Path | None = None
    """The folder the model was loaded from (None for a model built in memory)."""

    @property
    def default_metric(self) -> str:
        """The distance this model's readings use unless told otherwise (``inversionview.json``:
        ``"defaults": {"metric": "cosine", "epsilon": 0.25}`` suits large language models)."""
        return self.meta.get("defaults", {}).get("metric", "euclidean")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def default_epsilon(self) -> float:
        return float(self.meta.get("defaults", {}).get("epsilon", 0.1))

    def distance_settings(self, metric: str | None = None, epsilon: float | None = None) -> tuple[str, float]:
        """``(metric, epsilon)``, each taken from this model's defaults where not given."""
        if epsilon is not None and epsilon < 0:
            raise UserError("--epsilon must not be negative")
        return metric or self.default_metric, self.default_epsilon if epsilon is None else epsilon

    def use_corpus(
        self,
        path: str | Path | None = None,
        *,
        dataset: str | None = None,
        field: str = "text",
        max_len: int | None = None,
    ) -> None:
        """Draw this free-text model's inputs from a corpus file (one input a line, or JSON Lines with a
        ``"text"`` field) or a Hugging Face dataset ``NAME[:SPLIT]`` (its ``field`` column), each at
        most ``max_len`` tokens (BOS and EOS included; longer lines are split)."""
        if not isinstance(self.task, TextTask):
            raise UserError(f"a corpus is for free-text models; {self.source} reads {self.task.name} inputs")
        if (path is None) == (dataset is None):
            raise UserError("give a corpus file or a dataset, not both or neither")
        if max_len is not None:
            self.task.max_len = max_len
        tokenizer, max_len = self.task.tokenizer, self.task.max_len
        if path is not None:
            texts = load_corpus(Path(path), tokenizer, max_len)
        else:
            texts = load_dataset_texts(dataset, tokenizer, max_len, field)
        self.task.use_corpus(texts)

    @property
    def n_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def n_heads(self) -> int:
        return self.model.config.num_attention_heads

    @property
    def d_model(self) -> int:
        return self.model.config.hidden_size

    @property
    def layout(self) -> Layout:
        config = self.model.config
        return layout_for(config.model_type, parallel_residual=getattr(config, "use_parallel_residual", False))

    @property
    def blocks(self) -> torch.nn.ModuleList:
        return submodule(self.model, self.layout.blocks)

    @property
    def is_encoder(self) -> bool:
        """Whether every position sees the whole input (BERT and kin), not only what comes before it."""
        return self.layout.encoder

    @property
    def reads_attention(self) -> bool:
        """Whether attention patterns can be read from this model (GPT-2 layouts)."""
        return self.layout.qkv is not None

    def sites(self) -> list[Site]:
        resid_mid = self.layout.mid_norm is not None
        return all_sites(self.n_layers, self.n_heads, resid_mid=resid_mid, encoder=self.is_encoder)

    def site(self, name: str) -> Site:
        resid_mid = self.layout.mid_norm is not None
        return parse_site(name, self.n_layers, self.n_heads, resid_mid=resid_mid, encoder=self.is_encoder)

    def query_tokens(self, text: str) -> list[str]:
        """The positions a reading of ``text`` can query, as every view shows them: BOS (position 0),
        then the text's tokens (EOS is never a query position)."""
        self.task.validate(text)
        return display_tokens(self.task.tokenizer, self.task.encode(text)[:-1])

    def encode_batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(B, T)`` (``BOS + text + EOS``, right-padded) and lengths ``(B,)``."""
        return pad_batch([self.task.encode(t) for t in texts], self.task.tokenizer.pad_id)

    @torch.no_grad()
    def activations(
        self, ids: torch.Tensor, sites: list[Site], attention_layers: tuple[int, ...] = ()
    ) -> tuple[dict[Site, torch.Tensor], dict[int, torch.Tensor]]:
        """Activations ``(B, T, d_model)`` at ``sites`` (and attention patterns) for token ids."""
        mask = (ids != self.task.tokenizer.pad_id).long().to(self.device) if self.is_encoder else None
        acts, patterns = run_with_sites(
            self.model, self.layout, ids.to(self.device), sites, attention_layers=attention_layers, attention_mask=mask
        )
        return {s: a.cpu() for s, a in acts.items()}, {layer: p.cpu() for layer, p in patterns.items()}

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        if self.is_encoder:
            raise UserError(f"{self.source} is an encoder, loaded without a head: it predicts no tokens")
        return self.model(input_ids=ids.to(self.device), use_cache=False).logits.cpu()

    def save(self, directory: Path, provenance: dict | None = None) -> None:
        """Write the model in the Hugging Face layout plus ``inversionview.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        self.content_hash = file_hash(directory / WEIGHTS_FILE)
        self.directory = directory
        self.meta = {
            **({"defaults": self.meta["defaults"]} if "defaults" in self.meta else {}),
            "task": self.task.name,
            "tokenizer": self.task.tokenizer.to_dict(),
            "content_hash": self.content_hash,
            "provenance": provenance or {},
        }
        write_json(directory / PROBED_META_FILE, self.meta)


def use_fused_gelu(model: GPT2LMHeadModel) -> GPT2LMHeadModel:
    """Swap GPT-2's tanh-approximated GELU, written as six tensor operations, for torch's fused kernel
    of the same function (equal to within 1e-6): brute-force preimages run 2x faster on a CPU."""
    if model.config.model_type == "gpt2" and model.config.activation_function in ("gelu_new", "gelu_pytorch_tanh"):
        for block in model.transformer.h:
            block.mlp.act = torch.nn.GELU(approximate="tanh")
    return model


def new_gpt2(task: Task, *, d_model: int, n_layers: int, n_heads: int, seed: int) -> GPT2LMHeadModel:
    """A fresh GPT-2 sized for a task's vocabulary and input length, with dropout off."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=task.tokenizer.vocab_size,
        n_positions=task.max_len,
        n_embd=d_model,
        n_layer=n_layers,
        n_head=n_heads,
        n_inner=4 * d_model,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=task.tokenizer.bos_id,
        eos_token_id=task.tokenizer.eos_id,
    )
    return use_fused_gelu(GPT2LMHeadModel(config))


HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]


def _resolve_directory(name_or_dir: str) -> Path:
    """A bundled name, a local directory, or a Hugging Face hub name (``gpt2``, ``gpt2-medium``…),
    fetched to or read from the local Hugging Face cache (safetensors only)."""
    path = bundled.probed_dir(name_or_dir)
    if path is not None:
        return path
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    known = ", ".join(bundled.probed_names()) or "none"
    looks_like_hub_name = name_or_dir and not name_or_dir.startswith((".", "/", "~")) and name_or_dir.count("/") <= 1
    if looks_like_hub_name:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            return Path(snapshot_download(name_or_dir, allow_patterns=HUB_FILES))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
            pass
    raise UserError(
        f"no probed model {name_or_dir!r}: not a bundled name ({known}), a directory, "
        "nor a model on the Hugging Face hub or in its local cache"
    )


def _task_for(
    directory: Path,
    meta: dict,
    config_data: dict,
    task: str | None,
    vocab: str | None,
    specials: tuple[str | None, str | None, str | None],
) -> Task:
    """The task a model's inputs belong to, with its tokenizer: the caller's ``task``/``vocab``,
    else ``inversionview.json``'s, else the directory's own Hugging Face tokenizer (free text)."""
    bos, eos, pad = specials
    if vocab is not None:
        tokenizer = CharTokenizer(vocab, bos or "B", eos or "E", pad or "P")
    elif "tokenizer" in meta:
        tokenizer = tokenizer_from_dict(meta["tokenizer"])
    elif has_hf_tokenizer(directory):
        tokenizer = HFTokenizer(directory)
        task = task or "text"
    else:
        raise UserError(
            f"{directory} has no {PROBED_META_FILE} and no tokenizer: pass --task and --vocab (with --bos/--eos/--pad)"
        )
    task_name = task or meta.get("task")
    if task_name is None:
        raise UserError(f"{directory} has no {PROBED_META_FILE}: pass --task")
    if task_name == "text":
        context = config_data.get("n_positions", config_data.get("max_position_embeddings", DEFAULT_MAX_LEN))
        return TextTask(tokenizer, max_len=min(DEFAULT_MAX_LEN, context))
    return get_task(task_name, tokenizer)


def _weights(directory: Path, meta: dict, allow_pickle: bool) -> tuple[str, bool]:
    """The weights' content hash, and whether they are safetensors (else a pickle the user allowed)."""
    weights = directory / WEIGHTS_FILE
    if weights.is_file():
        content_hash = file_hash(weights)
        if meta.get("content_hash") not in (None, content_hash):
            raise UserError(f"{weights} does not match the content hash in {PROBED_META_FILE} (corrupt or replaced)")
        return content_hash, True
    if (directory / HF_PICKLE_FILE).is_file():
        if not allow_pickle:
            raise UserError(f"{directory} holds only {HF_PICKLE_FILE}, a pickle; pass --allow-pickle to load it")
        return file_hash(directory / HF_PICKLE_FILE), False
    raise UserError(f"{directory} has no {WEIGHTS_FILE} (nor {HF_PICKLE_FILE})")


def load_probed(
    name_or_dir: str,
    *,
    task: str | None = None,
    vocab: str | None = None,
    bos: str | None = None,
    eos: str | None = None,
    pad: str | None = None,
    allow_pickle: bool = False,
    dtype: str | None = None,
    device: str | None = None,
) -> ProbedModel:
    """Load a bundled probed model by name, or a local Hugging Face GPT-2 directory.

    ``task``/``vocab``/``bos``/``eos``/``pad`` describe a model that has no ``inversionview.json``
    (and override one that has). ``allow_pickle`` permits ``pytorch_model.bin``, which is unpickled.
    ``dtype`` (``"bfloat16"``, ``"float16"``) runs a large model in less memory; distances are still
    computed in float32. ``device`` places the model (default ``"auto"``: the GPU when there is one).
    """
    if dtype not in (None, *DTYPES):
        raise UserError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    the_device = resolve_device(device)
    directory = _resolve_directory(name_or_dir)
    meta_path = directory / PROBED_META_FILE
    meta = read_json(meta_path, "probed model metadata") if meta_path.is_file() else {}
    config_data = read_json(directory / HF_CONFIG_FILE, "probed model config")
    layout_for(str(config_data.get("model_type")))  # an unsupported family fails here, with the list
    the_task = _task_for(directory, meta, config_data, task, vocab, (bos, eos, pad))
    content_hash, use_safetensors = _weights(directory, meta, allow_pickle)
    auto = AutoModel if layout_for(str(config_data.get("model_type"))).encoder else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(
            directory,
            local_files_only=True,
            use_safetensors=use_safetensors,
            dtype=getattr(torch, dtype or "float32"),
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load probed model from {directory}: {first_line(exc)}") from None
    vocab_size = the_task.tokenizer.vocab_size
    if model.config.vocab_size < vocab_size:
        raise UserError(f"vocabulary has {vocab_size} tokens but the model only {model.config.vocab_size}")
    use_fused_gelu(model).eval().to(the_device)
    return ProbedModel(model, the_task, content_hash, str(name_or_dir), meta, directory)
