"""Command-line options written once, from the documented fields of a config dataclass (the
tuned-lens way): a field's flag, type, default and help come from the field itself, so the command
line and the Python API cannot drift apart.

A field documents itself with the string under it; its first sentence becomes the flag's help.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from inversionview.errors import UserError, as_flags
from inversionview.paths import output_file, output_folder

UNSET = object()
"""A documented option whose default is not a literal (or that has none)."""


@dataclass(frozen=True)
class Documented:
    """One documented option: a dataclass field or a function parameter, as its source writes it."""

    name: str
    annotation: str
    default: object
    doc: str


def documented(target: type | Callable | str) -> dict[str, Documented]:
    """The options of a config dataclass (each field documented by the string under it) or of a
    function (its parameters, documented in the docstring's ``Args:`` section), by name, read from
    the source with ``ast``: ``"module:Name"`` names one without importing it, so the command line
    is built before torch loads."""
    if not isinstance(target, str):
        target = f"{target.__module__}:{target.__qualname__}"
    return _documented(target)


@functools.cache
def _documented(target: str) -> dict[str, Documented]:
    module, _, name = target.partition(":")
    tree = _module_tree(module)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == name)
    constants = functools.partial(_constant, module)
    return _fields(node.body, constants) if isinstance(node, ast.ClassDef) else _parameters(node, constants)


@functools.cache
def _module_tree(module: str) -> ast.Module:
    return ast.parse(Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8"))


def _constant(module: str, name: str) -> ast.expr | None:
    """The value a module-level constant ``name`` of ``module`` is assigned, following imports."""
    for node in _module_tree(module).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return node.value
        if isinstance(node, ast.ImportFrom) and node.module and any(a.name == name for a in node.names):
            return _constant(node.module, name)
    return None


def _literal(node: ast.expr | None, constants: Callable[[str], ast.expr | None]) -> object:
    """The value a default's source writes: a literal, or a module constant that is one."""
    if isinstance(node, ast.Name):
        node = constants(node.id)
    try:
        return UNSET if node is None else ast.literal_eval(node)
    except ValueError:
        return UNSET


def _fields(body: list[ast.stmt], constants: Callable) -> dict[str, Documented]:
    """A dataclass's fields, each with the string literal right under it as its doc."""
    found = {}
    for node, after in zip(body, [*body[1:], None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            is_doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
            doc = " ".join(str(after.value.value).split()) if is_doc else ""
            name = node.target.id
            found[name] = Documented(name, ast.unparse(node.annotation), _literal(node.value, constants), doc)
    return found


ARG_LINE = re.compile(r"^\s{4}(\w+):\s*(.*)$")


def _parameters(node: ast.FunctionDef, constants: Callable) -> dict[str, Documented]:
    """A function's parameters, each documented by its entry in the docstring's ``Args:`` section."""
    docs: dict[str, str] = {}
    text = ast.get_docstring(node) or ""
    section = text.partition("Args:\n")[2].split("\n\n")[0]
    for line in section.splitlines():
        if match := ARG_LINE.match(line):
            current, docs[match[1]] = match[1], match[2]
        elif line.strip() and docs:
            docs[current] += " " + line.strip()
    arguments = node.args
    positional = arguments.posonlyargs + arguments.args
    defaults = [None] * (len(positional) - len(arguments.defaults)) + arguments.defaults
    pairs = [*zip(positional, defaults), *zip(arguments.kwonlyargs, arguments.kw_defaults)]
    return {
        arg.arg: Documented(arg.arg, ast.unparse(arg.annotation or ast.Name("str")), _literal(default, constants),
                            docs.get(arg.arg, ""))
        for arg, default in pairs
    }  # fmt: skip


def field_docs(target: type | Callable | str) -> dict[str, str]:
    """Each documented option's doc, by name (those with none left out)."""
    return {name: option.doc for name, option in documented(target).items() if option.doc}


SENTENCE_END = re.compile(r"\.\s+(?=[A-Z(])")
"""Where a doc's first sentence ends: a full stop before a capital (not "e.g. counting")."""


def _first_sentence(text: str) -> str:
    """The help a flag shows: the doc's first sentence, without its code markup, its `parameter`
    names written as flags, starting in lower case as argparse's own help does."""
    sentence = as_flags(SENTENCE_END.split(text)[0].rstrip(".").replace("``", ""))
    is_acronym = sentence[1:2].isupper()
    return sentence if is_acronym else sentence[:1].lower() + sentence[1:]


def add_config_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    target: type | Callable | str,
    names: list[str] | None = None,
    *,
    flags: dict[str, str] | None = None,
    types: dict[str, object] | None = None,
    defaults: dict[str, object] | None = None,
) -> None:
    """A flag for each documented option of ``target`` in ``names`` (default: every documented one):
    ``--option-name`` (or ``flags[name]``), typed from its annotation (or ``types[name]``: a type, or
    a tuple of choices; a ``Literal[...]`` gives the choices), with its default (or
    ``defaults[name]``, a command's own) and its doc's first sentence as help. So a flag, its default
    and its help are written once, in the library; a config built from the parsed flags
    (``config_values``) is the one Python would build."""
    options = documented(target)
    for name in names or [name for name, option in options.items() if option.doc]:
        option = options[name]
        default = (defaults or {}).get(name, None if option.default is UNSET else option.default)
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        help_text = _first_sentence(option.doc or name.replace("_", " "))
        if isinstance(default, int | float) and not isinstance(default, bool) and "default" not in help_text:
            help_text += f" (default {default:,})"
        kind = _argument_kind(option.annotation, (types or {}).get(name))
        if "type" in kind:  # named after the flag, not the parameter, where the two differ
            kind["metavar"] = flag.lstrip("-").replace("-", "_").upper()
        parser.add_argument(flag, dest=name, default=default, help=help_text, **kind)


def _argument_kind(annotation: str, given_type: object) -> dict:
    """How argparse reads an option annotated ``annotation``: a switch, a choice or a typed value."""
    base = annotation.split("|")[0].strip()
    if base == "bool":
        return {"action": argparse.BooleanOptionalAction}
    if base.startswith("Literal["):
        return {"choices": ast.literal_eval(base.removeprefix("Literal"))}
    if isinstance(given_type, tuple):
        return {"choices": given_type}
    return {"type": given_type or {"int": int, "float": float, "Path": Path}.get(base, str)}


def config_values(args: argparse.Namespace, cls: type) -> dict:
    """The fields of ``cls`` that the parsed ``args`` set (those at None keep the config's default)."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a ``UserError``) instead of argparse's usage block,
    and which keeps the flag of each destination (``option_flags``, a default of the parsed arguments)
    so that a library message naming a parameter shows the flag that sets it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_defaults(option_flags=self.option_flags)  # a subcommand's parser overrides its parent's

    def option_flags(self) -> dict[str, str]:
        """The long flag of each destination, argument groups and parents' options included."""
        return {
            action.dest: long[0]
            for action in self._actions  # every action, whichever group added it
            if (long := [name for name in action.option_strings if name.startswith("--")])
        }

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see --help)")


def folder_to_write(text: str) -> Path:
    """An argparse type for a run's folder, checked as it is parsed (``paths.output_folder``)."""
    return output_folder(Path(text))


def file_to_write(text: str) -> Path:
    """An argparse type for a file to write, checked as it is parsed (``paths.output_file``)."""
    return output_file(Path(text))


def epsilon(text: str) -> float:
    """An argparse type for ε: a finite number, not negative (checked before any model loads)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def whole_number(low: int, high: int | None = None):
    """An argparse type for a count or a port: a whole number from ``low`` up to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    return parse


def position(text: str) -> int | str:
    """A position as a user writes it: a whole number, or a name the task gives one."""
    try:
        return int(text)
    except ValueError:
        return text


def site_at(text: str) -> tuple[str, int | str]:
    """An argparse type for ``SITE@POSITION``: a position as ``invert`` takes it, or a named one."""
    site, at, where = text.rpartition("@")
    if not (at and site and where):
        raise argparse.ArgumentTypeError(f"{text!r}: write SITE@POSITION, e.g. blocks.0.hook_attn_out@-2 or @:")
    return site, position(where)
