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
