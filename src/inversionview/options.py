"""Command-line options written once, from the documented fields of a config dataclass (the
tuned-lens way): a field's flag, type, default and help come from the field itself, so the command
line and the Python API cannot drift apart.

A field documents itself with the string under it; its first sentence becomes the flag's help.
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import textwrap
from dataclasses import MISSING, fields


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal right under it in the class body)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        is_doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and is_doc:
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


def _first_sentence(text: str) -> str:
    """The help a flag shows: the docstring's first sentence, without its code markup."""
    return text.split(". ")[0].rstrip(".").replace("``", "")


def add_config_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    names: list[str],
    *,
    flags: dict[str, str] | None = None,
    types: dict[str, object] | None = None,
) -> None:
    """A flag for each field of ``cls`` in ``names``: ``--field-name`` (or ``flags[name]``), typed
    from its annotation (or ``types[name]``), help from its docstring. Every flag defaults to None,
    meaning "the config's own default", so that a config built from the parsed flags
    (``config_values``) is the one the Python API would build."""
    docs, by_name = field_docs(cls), {f.name: f for f in fields(cls)}
    for name in names:
        field = by_name[name]
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        help_text = _first_sentence(docs.get(name, name.replace("_", " ")))
        shown = field.default not in (MISSING, None, False) and "default" not in help_text
        help_text += f" (default {field.default:,})" if shown and isinstance(field.default, int | float) else ""
        annotation = str(field.type)
        if annotation.startswith("bool"):
            kind = {"action": argparse.BooleanOptionalAction}
        else:
            base = annotation.split("|")[0].strip()
            kind = {"type": (types or {}).get(name, {"int": int, "float": float}.get(base, str))}
        parser.add_argument(flag, dest=name, default=None, help=help_text, **kind)


def config_values(args: argparse.Namespace, cls: type) -> dict:
    """The fields of ``cls`` that the parsed ``args`` set (those left at None keep the config's default)."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
