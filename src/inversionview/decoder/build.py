"""Building the decoder a training run starts from."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from inversionview.decoder.model import Decoder, DecoderConfig
from inversionview.decoder.store import built_decoder, continued_decoder
from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel
from inversionview.probed.sites import Site, canonical_site
from inversionview.storage import DECODER_CONFIG_FILE
from inversionview.tasks import before_eos


def decoder_sites(probed: ProbedModel, names: list[str] | None = None) -> list[Site]:
    """The sites one decoder serves: those ``names``d, else every site of ``probed``; aliases counted once."""
    seen: list[Site] = []
    for site in probed.sites() if names is None else [probed.site(name) for name in names]:
        if probed.site_width(site) != probed.d_model:
            raise UserError(
                f"a decoder reads activations of the model's width ({probed.d_model}); "
                f"{site.name} has {probed.site_width(site)}: read it with patching, or pick another site"
            )
        if canonical_site(site) not in seen:
            seen.append(canonical_site(site))
    return seen


def is_decoder_directory(init_from: str | Path | None) -> bool:
    """Whether ``init_from`` names a trained decoder (rather than a pretrained LM, or nothing)."""
    return init_from is not None and (Path(init_from) / DECODER_CONFIG_FILE).is_file()


def new_decoder(
    probed: ProbedModel,
    *,
    d_model: int = 128,
    n_layers: int = 2,
    n_heads: int = 4,
    n_condition_layers: int = 2,
    occurrences: bool = False,
    init_from: str | None = None,
    sites: list[str] | None = None,
    tied_embeddings: bool = False,
    token_match: bool = False,
) -> Decoder:
    """The decoder a new run starts from: an earlier decoder (``init_from`` a decoder directory,
    whose shape it takes), a pretrained LM (``init_from`` a GPT-2 directory), or a fresh one with
    the token and position embeddings of the probed model. A decoder for a corpus writes only the
    corpus's tokens (``Decoder.restrict_vocabulary``)."""
    shape = {"d_model": d_model, "n_layers": n_layers, "n_heads": n_heads, "n_condition_layers": n_condition_layers}
    features = {"occurrences": occurrences, "tied_embeddings": tied_embeddings, "token_match": token_match}
    decoder = _starting_decoder(probed, shape, features, init_from, sites)
    tokens = probed.task.training_tokens()
    if tokens is not None:
        decoder.restrict_vocabulary(sorted(tokens))
    return decoder


def _starting_decoder(
    probed: ProbedModel, shape: dict, features: dict, init_from: str | None, sites: list[str] | None
) -> Decoder:
    """``features``: the ``occurrences``, ``tied_embeddings`` and ``token_match`` switches."""
    n_layers, n_condition_layers = shape["n_layers"], shape["n_condition_layers"]
    sites = decoder_sites(probed, sites)
    if is_decoder_directory(init_from):
        added = {"occurrences": features["occurrences"], "token_match": features["token_match"]}
        return continued_decoder(init_from, probed, n_layers=n_layers, n_condition_layers=n_condition_layers, **added)
    if init_from is not None:
        if features["token_match"]:
            raise UserError("`token_match` starts from scratch or from a decoder, not from a pretrained GPT-2")
        from inversionview.decoder.pretrained import pretrained_decoder

        return pretrained_decoder(init_from, probed, [s.name for s in sites], n_condition_layers)
    config = DecoderConfig(
        vocab_size=probed.task.tokenizer.vocab_size,
        max_len=probed.task.max_len,
        d_activation=probed.d_model,
        sites=[s.name for s in sites],
        **shape,
        **features,
    )
    decoder = built_decoder(config, probed)
    _copy_probed_embeddings(probed, decoder)
    return decoder


@torch.no_grad()
def _copy_probed_embeddings(probed: ProbedModel, decoder: Decoder) -> None:
    """The probed model already knows which tokens and positions are alike; start from that."""
    width = min(decoder.config.d_model, probed.d_model)
    wte = probed.input_embedding().float().cpu()[: decoder.config.vocab_size]
    decoder.token_embedding.weight[: wte.shape[0], :width] = wte[:, :width]
    wpe = probed.position_embedding()  # learned positions (GPT-2)
    if wpe is not None:
        wpe = wpe.float().cpu()[: decoder.config.max_len]
        decoder.position_embedding.weight[: wpe.shape[0], :width] = wpe[:, :width]


@torch.no_grad()
def site_scales(probed: ProbedModel, sites: list[Site], rng: random.Random, n: int = 256) -> torch.Tensor:
    """RMS of each site's activations over BOS and text positions of ``n`` of the decoder's
    training inputs (``is_decoder_heldout``): (S,)."""
    ids, lengths = probed.encode_batch(probed.task.sample_texts(rng, n, decoder=True))
    acts, _ = probed.activations(ids, sites)
    mask = before_eos(lengths, ids.shape[1])
    return torch.stack([acts[s][mask].pow(2).mean().sqrt() for s in sites]).clamp_min(1e-6)
