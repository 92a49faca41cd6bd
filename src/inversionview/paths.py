"""Paths a user names, checked before any work so that none is lost and no model loads in vain.

Torch-free, so the command line checks them before a model loads, and the library, which checks them
again where it opens them, gives the same message from Python.
"""

from __future__ import annotations

import os
from pathlib import Path

from inversionview.errors import UserError


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


def plot_file(path: Path) -> Path:
    """``path`` as a PNG to write (the plots are written as PNG)."""
    if Path(path).suffix.lower() != ".png":
        raise UserError(f"{path}: a plot is written as PNG; name a .png file")
    return output_file(Path(path))


def input_folder(path: str | Path, what: str) -> Path:
    """``path`` as a folder to read ``what`` from: it must exist."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{what} {folder} does not exist" if not folder.exists() else f"{what} {folder} is a file")
    return folder


def features_file(path: str | Path) -> Path:
    """``path`` as the user's features: a Python file of functions ``name(text, position) -> value``."""
    file = Path(path)
    if not file.is_file() or file.suffix != ".py":
        raise UserError(f"`features_file` {file}: name a Python file of functions name(text, position) -> value")
    return file
