"""What a patch is measured by: a logit difference at the position where the model gives its answer.

LD = logit(answer) − logit(alternative) at the answer position; each task says which answer
(``Task.answer``): the count for counting, one answer digit for addition, the indirect object
against the subject for IOI, and for free text the tokens given as ``answer`` and ``alt`` (without
them there is no logit difference, and a patch is measured by how the next-token distribution moves).
"""

from __future__ import annotations

from inversionview.probed.model import ProbedModel
from inversionview.tasks import Answer

Metric = Answer


def task_metric(
    probed: ProbedModel,
    text: str,
    source: str,
    *,
    target: str | None = None,
    answer: str | None = None,
    alt: str | None = None,
) -> Metric:
    """The metric of a patch of ``source`` into ``text`` for ``probed``'s task.

    Args:
        target: Addition: the answer digit measured, A1-A4 (default: the first that differs).
        answer: Free text: the token whose logit counts for (with `alt`).
        alt: Free text: the token whose logit counts against.
    """
    return probed.task.answer(text, source, target=target, answer=answer, alt=alt)
