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
