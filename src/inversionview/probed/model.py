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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from inversionview.errors import UserError, first_line
from inversionview.probed.distance import EpsilonBall
from inversionview.probed.layouts import Layout, layout_for, submodule
from inversionview.probed.patching import hook_values, patched_logits
from inversionview.probed.sites import Site, all_sites, parse_site, run_with_sites
from inversionview.probed.source import probed_directory
from inversionview.storage import (
    HF_CONFIG_FILE,
    HF_PICKLE_FILE,
    PROBED_META_FILE,
    WEIGHTS_FILE,
    file_hash,
    read_json,
    write_json,
)
from inversionview.tasks import (
    CharTokenizer,
    HFTokenizer,
    Task,
    get_task,
    get_task_class,
    pad_batch,
    tokenizer_from_dict,
)
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
        raise UserError(f"`device` {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "meta":
        raise UserError("`device` meta holds no values; use auto, cpu, cuda or cuda:N")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, NotImplementedError) as exc:  # a CPU-only build asserts
        raise UserError(f"`device` {name}: not available here ({first_line(exc)})") from None
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

    def ball(self, metric: str | None = None, epsilon: float | None = None) -> EpsilonBall:
        """The ε-ball of a reading of this model: ``metric`` and ``epsilon`` its defaults where not given."""
        return EpsilonBall(metric or self.default_metric, self.default_epsilon if epsilon is None else epsilon)

    def distance_settings(self, metric: str | None = None, epsilon: float | None = None) -> tuple[str, float]:
        """``(metric, epsilon)``, each taken from this model's defaults where not given."""
        ball = self.ball(metric, epsilon)  # refuses an unknown metric or an ε that is not a number
        return ball.metric, ball.epsilon

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
        if not self.task.reads_corpus:
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
        """Next-token logits (B, T, V) for token ids (B, T), on the CPU."""
        return self.device_logits(ids).cpu()

    @torch.no_grad()
    def device_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) on the model's device."""
        if self.is_encoder:
            raise UserError(f"{self.source} is an encoder, loaded without a head: it predicts no tokens")
        return self.model(input_ids=ids.to(self.device), use_cache=False).logits

    def hook_values(self, ids: torch.Tensor, sites: list[Site]) -> dict[Site, torch.Tensor]:
        """Each site's value at its hook point in a run on ``ids`` (B, T), as patching replaces it."""
        return hook_values(self.model, self.layout, ids.to(self.device), sites)

    def patched_logits(
        self, ids: torch.Tensor, masks: dict[Site, torch.Tensor], source_values: dict[Site, torch.Tensor]
    ) -> torch.Tensor:
        """Logits (B, T, V) of a run on ``ids`` with each site's hook value taken from ``source_values``
        where its mask (B, T) is set (``patching.patched_logits``)."""
        return patched_logits(self.model, self.layout, ids.to(self.device), masks, source_values)

    def site_width(self, site: Site) -> int:
        """The width of ``site``'s activation."""
        return self.d_model

    def input_embedding(self) -> torch.Tensor:
        """The token embedding (vocab, d_model)."""
        return self.model.get_input_embeddings().weight.detach()

    def position_embedding(self) -> torch.Tensor | None:
        """Learned absolute position embeddings (n_ctx, d_model), where the model has them (GPT-2)."""
        wpe = getattr(getattr(self.model, "transformer", None), "wpe", None)
        return None if wpe is None else wpe.weight.detach()

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


def _task_for(
    directory: Path | None,
    meta: dict,
    config_data: dict,
    task: str | Task | None,
    vocab: str | None,
    specials: tuple[str | None, str | None, str | None],
    task_options: dict | None = None,
) -> Task:
    """The task a model's inputs belong to, with its tokenizer: the caller's ``task``/``vocab``/
    ``task_options``, else ``inversionview.json``'s, else the directory's own Hugging Face tokenizer
    (free text)."""
    if isinstance(task, Task):
        return task
    bos, eos, pad = specials
    options = {**meta.get("task_options", {}), **(task_options or {})}
    tokenizer = None
    if vocab is not None:
        tokenizer = CharTokenizer(vocab, bos or "B", eos or "E", pad or "P")
    elif "tokenizer" in meta and "tokens" not in (task_options or {}):
        tokenizer = tokenizer_from_dict(meta["tokenizer"])
    elif directory is not None and has_hf_tokenizer(directory):
        tokenizer = HFTokenizer(directory)
        task = task or "text"
    elif "tokens" not in options:
        raise UserError(
            f"{directory or 'the model'} has no {PROBED_META_FILE} and no tokenizer: "
            "pass `task` and `vocab` (with `bos`/`eos`/`pad`)"
        )
    task_name = task or meta.get("task")
    if task_name is None:
        raise UserError(f"{directory or 'the model'} has no {PROBED_META_FILE}: pass `task`")
    if get_task_class(task_name).reads_corpus:
        context = config_data.get("n_positions", config_data.get("max_position_embeddings", DEFAULT_MAX_LEN))
        return get_task(task_name, tokenizer, max_len=min(DEFAULT_MAX_LEN, context))
    return get_task(task_name, tokenizer, **options)


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
            raise UserError(f"{directory} holds only {HF_PICKLE_FILE}, a pickle; pass `allow_pickle` to load it")
        return file_hash(directory / HF_PICKLE_FILE), False
    raise UserError(f"{directory} has no {WEIGHTS_FILE} (nor {HF_PICKLE_FILE})")


def load_probed(
    name_or_dir,
    *,
    task: str | Task | None = None,
    task_options: dict | None = None,
    vocab: str | None = None,
    bos: str | None = None,
    eos: str | None = None,
    pad: str | None = None,
    allow_pickle: bool = False,
    dtype: str | None = None,
    device: str | None = None,
) -> ProbedModel:
    """Load a bundled probed model by name, a local directory (Hugging Face, or a native
    TransformerLens bridge's ``bridge_config.json``), or take a ``TransformerBridge`` object.

    ``task`` (a name or a Task), ``task_options`` (``{"tokens": "BOS,a,b,pad", "bos": "BOS", "pad":
    "pad", "length": "2-5"}`` for ``sequences``) and ``vocab``/``bos``/``eos``/``pad`` describe a model
    that has no ``inversionview.json`` (and override one that has). ``allow_pickle`` permits
    ``pytorch_model.bin``, which is unpickled. ``dtype`` (``"bfloat16"``, ``"float16"``) runs a large
    model in less memory; distances are still computed in float32. ``device`` places the model
    (default ``"auto"``: the GPU when there is one).
    """
    if dtype not in (None, *DTYPES):
        raise UserError(f"`dtype` {dtype!r}: use one of {', '.join(DTYPES)}")
    the_device = resolve_device(device)
    specials = (bos, eos, pad)
    if not isinstance(name_or_dir, (str, Path)):
        return _bridge_probed(name_or_dir, None, the_device, task, task_options, vocab, specials)
    directory = probed_directory(str(name_or_dir))
    if (directory / "bridge_config.json").is_file():
        return _bridge_probed(None, directory, the_device, task, task_options, vocab, specials)
    meta_path = directory / PROBED_META_FILE
    meta = read_json(meta_path, "probed model metadata") if meta_path.is_file() else {}
    config_data = read_json(directory / HF_CONFIG_FILE, "probed model config")
    layout_for(str(config_data.get("model_type")))  # an unsupported family fails here, with the list
    the_task = _task_for(directory, meta, config_data, task, vocab, specials, task_options)
    content_hash, use_safetensors = _weights(directory, meta, allow_pickle)
    auto = AutoModel if layout_for(str(config_data.get("model_type"))).encoder else AutoModelForCausalLM
    try:
        with _quiet_loading():
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


@contextmanager
def _quiet_loading():
    """No "Loading weights" bar from transformers: a model of ours loads in a blink, and the bar
    would mix into the output of the command (or the page) that loads it."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _bridge_probed(bridge, directory, device, task, task_options, vocab, specials) -> ProbedModel:
    """A TransformerLens bridge, given or saved in ``directory``, as a probed model."""
    from inversionview.probed import lens  # the bridge's module builds on this one

    if bridge is not None and not lens.is_bridge(bridge):
        raise UserError(f"a probed model is a name, a directory or a TransformerBridge, not {type(bridge).__name__}")
    meta, content_hash = {}, None
    if directory is not None:
        bridge, content_hash, meta = lens.load_native_bridge(directory, device)
    the_task = _task_for(directory, meta, {}, task, vocab, specials, task_options)
    if the_task.tokenizer.vocab_size > bridge.cfg.d_vocab:
        raise UserError(f"the task has {the_task.tokenizer.vocab_size} tokens but the bridge only {bridge.cfg.d_vocab}")
    probed = lens.wrap_bridge(bridge, the_task, str(directory or "bridge"), meta, device)
    probed.directory = directory
    probed.content_hash = content_hash or probed.content_hash
    return probed
