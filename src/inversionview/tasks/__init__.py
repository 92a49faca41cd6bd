"""Case studies, by name. Every module of this package is imported here, so a task module
registers itself (``@register_task``) and a new task is one new file."""

import importlib
import pkgutil

from inversionview.tasks.base import Answer, Task, before_eos, pad_batch
from inversionview.tasks.registry import TASKS, get_task, get_task_class, register_task
from inversionview.tasks.text import TextTask
from inversionview.tasks.tokenizer import CharTokenizer, HFTokenizer, Tokenizer, tokenizer_from_dict

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "TASKS",
    "Answer",
    "CharTokenizer",
    "HFTokenizer",
    "Task",
    "TextTask",
    "Tokenizer",
    "before_eos",
    "get_task",
    "get_task_class",
    "pad_batch",
    "register_task",
    "tokenizer_from_dict",
]
