"""Probed models: loading, training, and reading activations at named sites.

The names below are imported when first used, so that the torch-free parts of this package (the
``source`` options every command takes) load without torch: ``--help`` and a bad option answer at once.
"""

from inversionview.lazy import lazy_exports

_WHERE = {
    "ProbedModel": "inversionview.probed.model",
    "load_probed": "inversionview.probed.model",
    "new_gpt2": "inversionview.probed.model",
    "Site": "inversionview.probed.sites",
    "all_sites": "inversionview.probed.sites",
    "parse_site": "inversionview.probed.sites",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
