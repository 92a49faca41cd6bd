"""Where activation sites live in each family of Hugging Face models: causal LMs and encoders.

A site name means the same in every family (TransformerLens's names); a layout says which module's
input or output holds it. In a block with a parallel residual (GPT-J; GPT-NeoX and Pythia unless
configured otherwise) attention and MLP read the same input, so there is no resid_mid. Families that
normalise a sublayer's output before adding it (Gemma 2 and 3, OLMo 2) write something other than
hook_attn_out into the residual and are not listed.

Encoders (BERT, RoBERTa, DistilBERT) normalise after each sum (post-norm), as TransformerLens's
BERT does: ``resid_mid = resid_pre + attn_out``, ``ln1.hook_normalized = LN1(resid_mid)``,
``resid_post = ln1.hook_normalized + mlp_out``, ``hook_normalized_resid_post = LN2(resid_post)``,
which is the block's output and the next block's ``resid_pre``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from inversionview.errors import UserError


@dataclass(frozen=True)
class Layout:
    blocks: str
    """Path to the ModuleList of transformer blocks."""
    mid_norm: str | None
    """Module, inside a block, whose input is the residual stream between attention and MLP; None in
    a block with a parallel residual, which has no such stream."""
    attn: str
    mlp: str
    out_proj: str
    """The attention's output projection, whose input is every head's output side by side."""
    out_proj_stores_in_out: bool
    """GPT-2's Conv1D keeps its weight as (in, out); nn.Linear as (out, in)."""
    qkv: str | None = None
    """A fused query-key-value projection, from which attention patterns are computed (GPT-2)."""
    post_norm: str | None = None
    """An encoder's LayerNorm after the MLP's sum: its input is ``hook_resid_post``, its output
    ``hook_normalized_resid_post``. None in a pre-norm causal LM, whose block output is resid_post."""

    @property
    def encoder(self) -> bool:
        return self.post_norm is not None


_LLAMA_LIKE = Layout(
    blocks="model.layers",
    mid_norm="post_attention_layernorm",
    attn="self_attn",
    mlp="mlp",
    out_proj="self_attn.o_proj",
    out_proj_stores_in_out=False,
)
LAYOUTS = {
    "gpt_neo": Layout(
        blocks="transformer.h",
        mid_norm="ln_2",
        attn="attn",
        mlp="mlp",
        out_proj="attn.attention.out_proj",
        out_proj_stores_in_out=False,
    ),
    "gptj": Layout(
        blocks="transformer.h",
        mid_norm=None,
        attn="attn",
        mlp="mlp",
        out_proj="attn.out_proj",
        out_proj_stores_in_out=False,
    ),
    "gpt_neox": Layout(
        blocks="gpt_neox.layers",
        mid_norm="post_attention_layernorm",
        attn="attention",
        mlp="mlp",
        out_proj="attention.dense",
        out_proj_stores_in_out=False,
    ),
    "gpt2": Layout(
        blocks="transformer.h",
        mid_norm="ln_2",
        attn="attn",
        mlp="mlp",
        out_proj="attn.c_proj",
        out_proj_stores_in_out=True,
        qkv="attn.c_attn",
    ),
    **dict.fromkeys(("gemma", "llama", "mistral", "olmo", "phi3", "qwen2", "qwen3", "starcoder2"), _LLAMA_LIKE),
}


_BERT_LIKE = Layout(
    blocks="encoder.layer",
    mid_norm="attention.output.LayerNorm",
    attn="attention.output.dense",  # its output, bias included, is what attention adds to the residual
    mlp="output.dense",
    out_proj="attention.output.dense",
    out_proj_stores_in_out=False,
    post_norm="output.LayerNorm",
)
ENCODER_LAYOUTS = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "distilbert": Layout(
        blocks="transformer.layer",
        mid_norm="sa_layer_norm",
        attn="attention.out_lin",
        mlp="ffn",
        out_proj="attention.out_lin",
        out_proj_stores_in_out=False,
        post_norm="output_layer_norm",
    ),
}
"""Post-norm encoders, loaded as their base model (``AutoModel``), whatever head a checkpoint has."""
LAYOUTS |= ENCODER_LAYOUTS


def layout_for(model_type: str, *, parallel_residual: bool = False) -> Layout:
    """The layout of a family; ``parallel_residual`` as a GPT-NeoX config's ``use_parallel_residual``."""
    if model_type not in LAYOUTS:
        raise UserError(f"model_type {model_type!r} is not supported; supported: {', '.join(sorted(LAYOUTS))}")
    layout = LAYOUTS[model_type]
    return replace(layout, mid_norm=None) if parallel_residual else layout


def submodule(root: nn.Module, path: str) -> nn.Module:
    for name in path.split("."):
        root = getattr(root, name)
    return root
