"""Saving and loading a trained decoder, tied by content hash to the probed model it reads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from inversionview import bundled
from inversionview.decoder.model import Decoder, DecoderConfig
from inversionview.errors import UserError
from inversionview.paths import input_folder
from inversionview.probed.model import ProbedModel
from inversionview.storage import DECODER_CONFIG_FILE, WEIGHTS_FILE, load_tensors, read_json, save_tensors, write_json


def save_decoder(decoder: Decoder, directory: Path, probed: ProbedModel, provenance: dict | None = None) -> str:
    """Write ``model.safetensors`` and ``decoder.json``; returns the weights' content hash."""
    directory.mkdir(parents=True, exist_ok=True)
    content_hash = save_tensors(directory / WEIGHTS_FILE, decoder.state_dict())
    write_json(
        directory / DECODER_CONFIG_FILE,
        {
            "config": decoder.config.to_dict(),
            "probed_hash": probed.content_hash,
            "probed_task": probed.task.name,
            "content_hash": content_hash,
            "provenance": provenance or {},
        },
    )
    return content_hash


def saved_decoder_config(directory: Path) -> DecoderConfig:
    """The shape of the decoder saved in ``directory`` (its ``decoder.json``)."""
    meta = read_json(directory / DECODER_CONFIG_FILE, "decoder config")
    try:
        return DecoderConfig.from_dict(meta["config"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"decoder config {directory / DECODER_CONFIG_FILE} is incomplete ({exc})") from None


def built_decoder(config: DecoderConfig, probed: ProbedModel) -> Decoder:
    """A decoder of shape ``config`` for ``probed``, its weights still to be set. One with
    ``token_match`` takes the probed model's input embedding, which is not saved with it."""
    decoder = Decoder(config)
    if config.token_match:
        decoder.attach_probed_embedding(probed.input_embedding())
    return decoder


def load_decoder(decoder: str | Path | None, probed: ProbedModel) -> Decoder:
    """Load a decoder for ``probed``: from the directory ``decoder``, or the bundled one when None; it lives on
    the probed model's device.

    A decoder trained for other weights than ``probed``'s is refused: its samples would be
    read against the wrong model.
    """
    if decoder is None:
        path = bundled.decoder_dir(probed.source)
        if path is None:
            raise UserError(f"no bundled decoder for probed model {probed.source!r}; pass `decoder` DIR")
    else:
        path = input_folder(decoder, "decoder directory")
    meta = read_json(path / DECODER_CONFIG_FILE, "decoder config")
    if meta.get("probed_hash") != probed.content_hash:
        raise UserError(
            f"decoder {path} was trained for another probed model "
            f"(hash {str(meta.get('probed_hash'))[:12]}…, this one is {probed.content_hash[:12]}…)"
        )
    model = built_decoder(saved_decoder_config(path), probed)
    tensors = load_tensors(path / WEIGHTS_FILE, "decoder weights", meta.get("content_hash"))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise UserError(
            f"decoder weights in {path} do not fit its config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.eval().to(probed.device)


def continued_decoder(
    directory: str | Path,
    probed: ProbedModel,
    *,
    n_layers: int = 0,
    n_condition_layers: int = 0,
    occurrences: bool = False,
    token_match: bool = False,
) -> Decoder:
    """A new run's decoder that starts as the one in ``directory`` (trained for ``probed``).

    What it adds starts out doing nothing, so the decoder first computes exactly what the source
    did and then learns to use it: blocks past the source's (up to ``n_layers``), and residual MLP
    blocks of the activation's encoder past the source's (up to ``n_condition_layers``), add zero
    to their residual streams, the occurrence embedding (``occurrences``), where the source has
    none, is zero, and the gate of the match scores (``token_match``) starts closed, as in every new
    decoder.
    """
    source = load_decoder(directory, probed)
    config = replace(
        source.config,
        n_layers=max(n_layers, source.config.n_layers),
        n_condition_layers=max(n_condition_layers, source.config.n_condition_layers),
        occurrences=source.config.occurrences or occurrences,
        token_match=source.config.token_match or token_match,
    )
    decoder = built_decoder(config, probed)
    missing, _ = decoder.load_state_dict(source.state_dict(), strict=False)
    with torch.no_grad():
        for name in missing:
            new = decoder.get_parameter(name)
            # A new block's output projections are zero: the block is the identity at first.
            if name.startswith("occurrence_embedding") or name.endswith(
                ("attn.proj.weight", "attn.proj.bias", "mlp.2.weight", "mlp.2.bias", "down.weight", "down.bias")
            ):
                new.zero_()
    return decoder.to(probed.device)
