"""The package reads the way its README says: imports run one way down the pipeline, and no
function is too long to read in one sitting. Both are checked on the source text (ast)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "inversionview"
PIPELINE = ("tasks", "probed", "decoder", "inversion", "exact", "causal", "interpret", "views", "cli")
"""Each stage may import the stages before it, never one after it."""
SHARED = ("errors", "paths", "storage", "training", "distributed", "bundled", "options", "lazy")
"""Used by every stage; they import only each other."""
MAX_FUNCTION_LINES = 60


def stage_of(module: str) -> str | None:
    """The stage (or shared module) that ``inversionview.a.b`` belongs to; None for the package's
    own ``__init__``, the public surface that re-exports every stage."""
    parts = module.split(".")
    if parts[1:] in (["__main__"], ["commands"]):
        return "cli"  # ``python -m inversionview`` and the commands' bodies are the command line
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


def task_name_tests(path: Path, names: set[str]) -> list[int]:
    """Lines of ``path`` that compare something with a task's name, or test an object's task class."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            literals = [s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)]
            literals += [
                e.value
                for s in sides
                if isinstance(s, ast.Tuple | ast.List | ast.Set)
                for e in s.elts
                if isinstance(e, ast.Constant)
            ]
            if set(literals) & names and any(isinstance(s, ast.Attribute) and s.attr == "name" for s in sides):
                found.append(node.lineno)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            classes = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
            if any(word.endswith("Task") and word != "Task" for word in classes.replace(",", " ").split()):
                found.append(node.lineno)
    return found


def test_no_code_outside_tasks_tests_a_tasks_name():
    from inversionview.tasks import TASKS

    names = set(TASKS)
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in PACKAGE.rglob("*.py")
        if "tasks" not in path.relative_to(PACKAGE).parts
        for line in task_name_tests(path, names)
    ]
    assert not offenders, f"ask the task (a method of tasks/), not its name: {offenders}"


def test_the_name_check_sees_a_test_of_a_tasks_name(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("if task.name == 'counting':\n    pass\nok = isinstance(t, AdditionTask)\n")
    assert task_name_tests(probe, {"counting"}) == [1, 3]


EPSILON_COMPARISON = re.compile(r"[<>]=?\s*(\w+\.)*epsilon\b|\bepsilon\s*[<>]")
BALL = (PACKAGE / "probed" / "distance.py", PACKAGE / "probed" / "metric.py")
"""The ε-ball (``distance.py``) and the check of its radius (``metric.py``, torch-free)."""


def test_only_the_epsilon_ball_compares_a_distance_with_epsilon():
    """ "Inside ε" means one thing everywhere: ``EpsilonBall.contains``."""
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path not in BALL
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if EPSILON_COMPARISON.search(line)
    ]
    assert not found, "compare with ε through EpsilonBall:\n" + "\n".join(found)


def test_the_exact_preimage_and_patching_do_not_import_the_reading_they_grade():
    for stage in ("exact", "causal"):
        for path in (PACKAGE / stage).rglob("*.py"):
            imports = [name for _, name in imported_modules(path)]
            assert not any(name.startswith("inversionview.inversion") for name in imports), path


README = PACKAGE.parents[1] / "README.md"


def test_the_readme_stays_short_and_its_links_resolve():
    """The README answers a user's first questions; detail lives in docs/ (and every link lands)."""
    text = README.read_text()
    assert len(text.encode()) <= 15_000
    for target in re.findall(r"\]\(((?:docs|src)/[^)#]+)", text):
        assert (README.parent / target).exists(), target


def test_the_unit_tier_trains_nothing_and_starts_no_process():
    """``pytest tests/unit`` stays a minute's run: no trained fixture, no training, no subprocess."""
    # (A command line that is refused before any work, `train-decoder --out /proc/nope`, is welcome.)
    heavy = re.compile(r"\btiny_\w+|\btrain_(decoder|probed)\(|subprocess|torchrun|chromium")
    for path in (Path(__file__).parent).glob("test_*.py"):
        if path.name == Path(__file__).name:
            continue  # this file names them, to look for them
        found = [line.strip() for line in path.read_text().splitlines() if heavy.search(line)]
        assert not found, f"{path.name} belongs in tests/integration: {found[:3]}"


COMMAND_LINE = ("cli.py", "commands.py", "options.py")
"""The modules that know the flags; the rest of the package names its parameters."""


def flags_in_user_errors(path: Path) -> list[int]:
    """Lines of ``path`` where a ``UserError`` message writes a flag (--name) instead of a `parameter`."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "UserError"
        for text in ast.walk(node)
        if isinstance(text, ast.Constant) and isinstance(text.value, str) and re.search(r"--[a-z]", text.value)
    ]


def test_library_errors_name_parameters_not_flags():
    """A message serves Python and the command line: it names `parameter`, the CLI shows the flag."""
    found = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in PACKAGE.rglob("*.py")
        if path.name not in COMMAND_LINE
        for line in flags_in_user_errors(path)
    ]
    assert not found, "name the parameter in backticks, not its flag: " + ", ".join(found)


def test_the_flag_check_sees_a_flag_in_a_message(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('raise UserError(\n    f"give {x} "\n    "--source"\n)\nraise UserError("`source`")\n')
    assert flags_in_user_errors(probe) == [1]


CLI_LINES = 450


def test_the_command_line_stays_thin():
    """Flags come from the library's documented configs and parameters (``options.py``) and each
    command's body is a few calls (``commands.py``): neither file grows into a god file again."""
    for name in ("cli.py", "commands.py"):
        lines = len((PACKAGE / name).read_text().splitlines())
        assert lines <= CLI_LINES, f"{name} has {lines} lines (at most {CLI_LINES})"
