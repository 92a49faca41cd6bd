"""Saving and loading weights: safetensors plus JSON, content hashes, atomic writes.

File names live here, in one place. Nothing in this module unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from inversionview.errors import UserError

WEIGHTS_FILE = "model.safetensors"
HF_CONFIG_FILE = "config.json"
HF_PICKLE_FILE = "pytorch_model.bin"
PROBED_META_FILE = "inversionview.json"
DECODER_CONFIG_FILE = "decoder.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_STATE_FILE = "checkpoint.json"
HISTORY_FILE = "history.json"
PROVENANCE_FILE = "PROVENANCE.md"


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path, what: str) -> dict:
    """Read a JSON file, turning a missing or corrupt one into a one-line UserError."""
    if not path.is_file():
        raise UserError(f"{what}: {path} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what}: {path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Save tensors atomically as safetensors; return the file's content hash."""
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)
    return file_hash(path)


def load_tensors(path: Path, what: str, expected_hash: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file, checking its hash when one is expected."""
    if not path.is_file():
        raise UserError(f"{what}: {path} is missing")
    if expected_hash is not None and file_hash(path) != expected_hash:
        raise UserError(f"{what}: {path} does not match its recorded content hash (corrupt or replaced)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{what}: {path} is not a readable safetensors file ({exc})") from None


def output_folder(path: Path) -> Path:
    """``path`` as a folder a run will write into, checked before any work so that none is lost: an
    existing folder must be writable; a new one must be one the system lets us make (tried, then
    removed again, so that a run refused later leaves nothing behind)."""
    if path.exists():
        if not path.is_dir():
            raise UserError(f"`out` {path} is a file; name a directory for the run")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"cannot write into the folder {path}: permission denied")
        return path
    missing = [path, *(parent for parent in path.parents if not parent.exists())]
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder {path}: {exc.strerror or exc}") from None
    for folder in missing:  # deepest first
        folder.rmdir()
    return path


def output_file(path: Path) -> Path:
    """``path`` as a file to write, checked before any work: its folder must exist and be writable
    (as ``cp`` does, a missing folder is refused rather than made)."""
    if path.is_dir():
        raise UserError(f"{path} is a folder; name a file")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {path}: permission denied")
    return path
