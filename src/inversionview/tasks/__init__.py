"""Case studies, by name."""

from inversionview.errors import UserError
from inversionview.tasks.addition import AdditionTask
from inversionview.tasks.base import Task, before_eos, pad_batch
from inversionview.tasks.counting import CountingTask
from inversionview.tasks.ioi import IOITask
from inversionview.tasks.text import TextTask
from inversionview.tasks.tokenizer import CharTokenizer, HFTokenizer, Tokenizer, tokenizer_from_dict

TASKS = {"counting": CountingTask, "addition": AdditionTask, "ioi": IOITask, "text": TextTask}


def get_task(name: str, tokenizer: Tokenizer | None = None) -> Task:
    """The task called ``name``, optionally with a tokenizer other than its default."""
    if name == "text" and tokenizer is None:
        raise UserError("the text task needs the model's own tokenizer")
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](tokenizer) if tokenizer is not None else TASKS[name]()


__all__ = [
    "TASKS",
    "CharTokenizer",
    "HFTokenizer",
    "Task",
    "TextTask",
    "Tokenizer",
    "before_eos",
    "get_task",
    "pad_batch",
    "tokenizer_from_dict",
]
