"""Starting a decoder from a pretrained causal LM (a local Hugging Face GPT-2 directory).

The LM's embeddings, blocks, final norm and head become the decoder's; the activation processor
(condition encoder) is new. The decoder writes the probed model's inputs, so the LM must share the
probed model's vocabulary; its width may differ from the probed model's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inversionview.decoder.model import Decoder, DecoderConfig
from inversionview.errors import UserError, first_line
from inversionview.probed.model import ProbedModel


def pretrained_decoder(lm_directory: str | Path, probed: ProbedModel, sites: list[str], n_condition_layers: int = 2):
    """A decoder for ``probed`` whose transformer is the GPT-2 in ``lm_directory``."""
    from transformers import GPT2LMHeadModel

    path = Path(lm_directory)
    if not (path / "config.json").is_file():
        raise UserError(f"`init_from` {path}: no Hugging Face model there (config.json is missing)")
    try:
        lm = GPT2LMHeadModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"`init_from` {path}: cannot load a GPT-2 model ({first_line(exc)})") from None
    cfg = lm.config
    vocab = probed.task.tokenizer.vocab_size
    if cfg.vocab_size != vocab:
        raise UserError(
            f"`init_from` {path}: its vocabulary has {cfg.vocab_size} tokens, the probed model's {vocab}; "
            "a decoder writes the probed model's tokens, so the two must share one vocabulary"
        )
    if (cfg.n_inner or 4 * cfg.n_embd) != 4 * cfg.n_embd:
        raise UserError(f"`init_from` {path}: an MLP width other than 4 × d_model is not supported")
    if cfg.n_positions < probed.task.max_len:
        raise UserError(f"`init_from` {path}: {cfg.n_positions} positions, the task needs {probed.task.max_len}")
    decoder = Decoder(
        DecoderConfig(
            vocab_size=vocab,
            max_len=probed.task.max_len,
            d_activation=probed.d_model,
            sites=sites,
            d_model=cfg.n_embd,
            n_layers=cfg.n_layer,
            n_heads=cfg.n_head,
            n_condition_layers=n_condition_layers,
            gelu_approximate="tanh",
        )
    )
    copy_gpt2_weights(lm, decoder)
    return decoder


@torch.no_grad()
def copy_gpt2_weights(lm, decoder: Decoder) -> None:
    """Copy a Hugging Face GPT-2's weights into the decoder (GPT-2's Conv1D stores (in, out): transpose)."""
    t = lm.transformer
    decoder.token_embedding.weight.copy_(t.wte.weight)
    decoder.position_embedding.weight.copy_(t.wpe.weight[: decoder.config.max_len])
    for ours, theirs in zip(decoder.blocks, t.h):
        ours.ln_1.load_state_dict(theirs.ln_1.state_dict())
        ours.ln_2.load_state_dict(theirs.ln_2.state_dict())
        ours.attn.qkv.weight.copy_(theirs.attn.c_attn.weight.T)
        ours.attn.qkv.bias.copy_(theirs.attn.c_attn.bias)
        ours.attn.proj.weight.copy_(theirs.attn.c_proj.weight.T)
        ours.attn.proj.bias.copy_(theirs.attn.c_proj.bias)
        ours.mlp[0].weight.copy_(theirs.mlp.c_fc.weight.T)
        ours.mlp[0].bias.copy_(theirs.mlp.c_fc.bias)
        ours.mlp[2].weight.copy_(theirs.mlp.c_proj.weight.T)
        ours.mlp[2].bias.copy_(theirs.mlp.c_proj.bias)
    decoder.ln_f.load_state_dict(t.ln_f.state_dict())
    decoder.head.weight.copy_(lm.lm_head.weight)
