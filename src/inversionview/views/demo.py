"""The demo: a bundled model's held-out accuracy, then its demo input read at a few sites."""

from __future__ import annotations

from rich.console import Console

from inversionview import bundled
from inversionview.decoder.store import load_decoder
from inversionview.errors import UserError
from inversionview.inversion.invert import invert
from inversionview.probed.model import load_probed
from inversionview.probed.train import evaluate_probed
from inversionview.views.terminal import render


def demo(name: str, console: Console, *, samples: int = 500, seed: int = 0, limit: int = 12, **load_options) -> None:
    """Print the bundled model ``name``'s held-out accuracy and its readings of its demo input
    (``load_options`` as ``load_probed`` takes them, e.g. ``device``).

    Args:
        samples: Samples a reading.
        seed: Seed of the readings.
        limit: Distinct samples to print per site.
    """
    if name not in bundled.DEMOS:
        known = ", ".join(sorted(bundled.DEMOS))
        raise UserError(f"the demo reads a bundled model ({known}); for {name!r} use invert")
    probed = load_probed(name, **load_options)
    text, queries = bundled.DEMOS[name]
    decoder = load_decoder(None, probed)
    accuracy = evaluate_probed(probed, n=1000).accuracy
    console.print(
        f"bundled {name} model: held-out accuracy {accuracy:.1%}; reading {text!r} at "
        f"{len(queries)} sites ({samples} samples each)\n"
    )
    positions = probed.task.named_positions(text)
    for name, site in queries:
        render(invert(probed, decoder, text, positions[name], site, samples=samples, seed=seed), console, limit=limit)
        console.print()
