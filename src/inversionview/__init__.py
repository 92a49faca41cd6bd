"""InversionView: read the information in an activation by sampling its ε-preimage.

from inversionview import load_probed, load_decoder, invert

probed = load_probed("counting")
result = invert(probed, load_decoder(None, probed), "vvzccvczvv|v:5", -2, "blocks.1.hook_resid_post")

A decoder for your own model: ``train_decoder(probed, DecoderTrainConfig(steps=2000), "runs/mine")``
(for a free-text model, ``probed.use_corpus("corpus.txt")`` first).

The names below are imported when first used, so that ``import inversionview.cli`` (and
``inversionview --help``) does not pay for torch and transformers.
"""

from inversionview.lazy import lazy_exports

_PUBLIC = {
    "DecoderTrainConfig": "inversionview.decoder.config",
    "InversionResult": "inversionview.inversion.result",
    "Query": "inversionview.inversion.result",
    "Sample": "inversionview.inversion.result",
    "Settings": "inversionview.inversion.result",
    "UserError": "inversionview.errors",
    "invert": "inversionview.inversion.invert",
    "load_decoder": "inversionview.decoder.store",
    "load_probed": "inversionview.probed.model",
    "train_decoder": "inversionview.decoder.train",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
