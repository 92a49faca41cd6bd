"""InversionView: read the information in an activation by sampling its ε-preimage.

from inversionview import load_probed, load_decoder, invert

probed = load_probed("counting")
result = invert(probed, load_decoder(None, probed), "vvzccvczvv|v:5", -2, "blocks.1.hook_resid_post")
"""

from inversionview.decoder.store import load_decoder
from inversionview.errors import UserError
from inversionview.inversion.invert import invert
from inversionview.inversion.result import InversionResult, Query, Sample, Settings
from inversionview.probed import load_probed

__all__ = ["InversionResult", "Query", "Sample", "Settings", "UserError", "invert", "load_decoder", "load_probed"]
