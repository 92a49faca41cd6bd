"""InversionView: read the information in an activation by sampling its ε-preimage.

from inversionview import load_probed, load_decoder, invert

probed = load_probed("counting")
result = invert(probed, load_decoder(None, probed), "vvzccvczvv|v:5", -2, "blocks.1.hook_resid_post")

A decoder for your own model: ``train_decoder(probed, DecoderTrainConfig(steps=2000), "runs/mine")``
(for a free-text model, ``probed.use_corpus("corpus.txt")`` first).
"""

from inversionview.decoder.store import load_decoder
from inversionview.decoder.train import DecoderTrainConfig, train_decoder
from inversionview.errors import UserError
from inversionview.inversion.invert import invert
from inversionview.inversion.result import InversionResult, Query, Sample, Settings
from inversionview.probed import load_probed

__all__ = [
    "DecoderTrainConfig",
    "InversionResult",
    "Query",
    "Sample",
    "Settings",
    "UserError",
    "invert",
    "load_decoder",
    "load_probed",
    "train_decoder",
]
