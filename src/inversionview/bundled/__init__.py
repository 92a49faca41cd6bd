"""The models that ship inside the package, found by name.

Layout: ``bundled/{name}/probed`` holds a probed model, ``bundled/{name}/decoder`` its decoder, and
``PROVENANCE.md`` beside them says how each was made.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent


def probed_names() -> list[str]:
    return sorted(p.parent.parent.name for p in ROOT.glob("*/probed/config.json"))


def probed_dir(name: str) -> Path | None:
    path = ROOT / name / "probed"
    return path if (path / "config.json").is_file() else None


def decoder_dir(name: str) -> Path | None:
    path = ROOT / name / "decoder"
    return path if path.is_dir() and any(path.iterdir()) else None


DEFAULT = "counting"
"""The probed model a command reads when none is named."""

DEMOS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "counting": (
        "vvzccvczvv|v:5",
        (
            ("query letter", "blocks.0.hook_attn_out"),
            (":", "blocks.0.hook_resid_post"),
            (":", "blocks.1.hook_resid_post"),
        ),
    ),
    "addition": (
        "615+861=1476",
        (("=", "blocks.0.hook_attn_out"), ("=", "blocks.1.hook_resid_post"), ("A1", "blocks.1.hook_resid_post")),
    ),
    "ioi": (
        "When Mary and John went to the store, John gave a drink to",
        (("S2", "blocks.0.hook_resid_post"), ("END", "blocks.0.hook_resid_post"), ("END", "blocks.1.hook_resid_post")),
    ),
}
"""What ``inversionview demo`` reads for each bundled model: an input, and (named position, site) pairs."""
