"""Case studies, by name."""

from inversionview.errors import UserError
from inversionview.tasks.addition import AdditionTask
from inversionview.tasks.base import Task, pad_batch
from inversionview.tasks.counting import CountingTask
from inversionview.tasks.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_dict

TASKS = {"counting": CountingTask, "addition": AdditionTask}


def get_task(name: str, tokenizer: Tokenizer | None = None) -> Task:
    """The task called ``name``, optionally with a tokenizer other than its default."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](tokenizer) if tokenizer is not None else TASKS[name]()


__all__ = ["TASKS", "CharTokenizer", "Task", "Tokenizer", "get_task", "pad_batch", "tokenizer_from_dict"]
