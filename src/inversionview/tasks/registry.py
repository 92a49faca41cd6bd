"""Tasks by name: each task module registers its class, and the rest of the library asks for a
task only by the name a model's ``inversionview.json`` or the user gives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inversionview.errors import UserError

if TYPE_CHECKING:
    from inversionview.tasks.base import Task
    from inversionview.tasks.tokenizer import Tokenizer

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` known by its ``name``. A second class of the same name is a bug."""
    if TASKS.get(cls.name, cls) is not cls:
        raise ValueError(f"two tasks are called {cls.name!r}: {TASKS[cls.name].__name__} and {cls.__name__}")
    TASKS[cls.name] = cls
    return cls


def get_task_class(name: str) -> type[Task]:
    """The class of the task called ``name``."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def get_task(name: str, tokenizer: Tokenizer | None = None, **options) -> Task:
    """The task called ``name``, with ``tokenizer`` (else its own) and its options."""
    return get_task_class(name).build(tokenizer, **options)
