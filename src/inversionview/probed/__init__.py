"""Probed models: loading, training, and reading activations at named sites.

The names below are imported when first used, so that the torch-free parts of this package (the
``source`` options every command takes) load without torch: ``--help`` and a bad option answer at once.
"""

import importlib

_WHERE = {
    "ProbedModel": "model",
    "load_probed": "model",
    "new_gpt2": "model",
    "Site": "sites",
    "all_sites": "sites",
    "parse_site": "sites",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
