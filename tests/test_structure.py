"""The package reads the way its README says: imports run one way down the pipeline, and no
function is too long to read in one sitting. Both are checked on the source text (ast)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "inversionview"
PIPELINE = ("tasks", "probed", "decoder", "inversion", "exact", "causal", "interpret", "views", "cli")
"""Each stage may import the stages before it, never one after it."""
SHARED = ("errors", "storage", "training", "distributed", "bundled")
"""Used by every stage; they import only each other."""
MAX_FUNCTION_LINES = 60


def stage_of(module: str) -> str | None:
    """The stage (or shared module) that ``inversionview.a.b`` belongs to; None for the package's
    own ``__init__``, the public surface that re-exports every stage."""
    parts = module.split(".")
    if parts[1:] == ["__main__"]:
        return "cli"  # ``python -m inversionview`` is the command line
    return parts[1] if len(parts) > 1 else None


def rank(stage: str) -> int:
    return -1 if stage in SHARED else PIPELINE.index(stage)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) for every import of the package's own modules in ``path`` (under ``root``)."""
    found = []
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            if base == "inversionview":  # `from inversionview import bundled` imports a module
                found += [(node.lineno, f"inversionview.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return [(line, name) for line, name in found if name.startswith("inversionview.")]


def test_every_module_belongs_to_a_stage():
    for path in PACKAGE.rglob("*.py"):
        stage = stage_of(module_name(path))
        assert stage is None or stage in PIPELINE + SHARED, f"{path}: not in a pipeline stage nor shared"


def test_imports_run_one_way_down_the_pipeline():
    backward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        stage = stage_of(module_name(path))
        if stage is None:
            continue
        for line, name in imported_modules(path):
            target = stage_of(name)
            if target is None or rank(target) > rank(stage) or (stage in SHARED and target not in SHARED):
                backward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({stage}) imports {name} ({target})")
    assert not backward, "imports that run back up the pipeline:\n" + "\n".join(backward)


def test_the_check_sees_a_backward_import(tmp_path):
    """The checker itself: a probed module importing the decoder, absolutely or relatively, is caught
    with its line."""
    root = tmp_path / "inversionview"
    (root / "probed").mkdir(parents=True)
    bad = root / "probed" / "bad.py"
    bad.write_text("import torch\n\nfrom inversionview.decoder.model import Decoder\nfrom ..views import app\n")
    found = imported_modules(bad, root)
    assert found == [(3, "inversionview.decoder.model"), (4, "inversionview.views")]
    assert all(rank(stage_of(name)) > rank("probed") for _, name in found)


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
