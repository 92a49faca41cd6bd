"""What a patch is measured by: a logit difference at the position where the model gives its answer.

LD = logit(answer) − logit(alternative) at the answer position. Counting: the count after ``:``,
against the source's count. Addition: one answer digit (``A1``…``A4``; by default the first where the
input and the source differ), against the source's digit. IOI: the indirect object against the
subject, at END. Free text: ``answer`` against ``alt`` at the last position; without them there is
no logit difference, and a patch is measured by how the next-token distribution moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from inversionview.errors import UserError
from inversionview.probed.model import ProbedModel

ANSWER_DIGITS = ("A1", "A2", "A3", "A4")


@dataclass(frozen=True)
class Metric:
    position: int
    """Where the prediction is read (BOS = 0): the position that predicts the answer."""
    answer: int | None
    alt: int | None
    """Token ids whose logits count for and against; None for a free-text model without them."""
    description: str


def task_metric(
    probed: ProbedModel,
    text: str,
    source: str,
    *,
    target: str | None = None,
    answer: str | None = None,
    alt: str | None = None,
) -> Metric:
    """The metric of a patch of ``source`` into ``text`` for ``probed``'s task."""
    task = probed.task
    ids, source_ids = task.encode(text), task.encode(source)
    if task.name == "counting":
        at = task.named_positions(text)[":"]
        return _difference(probed, at, ids[at + 1], source_ids[at + 1], "the count")
    if task.name == "addition":
        digit = target or next((d for d in ANSWER_DIGITS if _differs(task, text, source, d)), None)
        if digit not in ANSWER_DIGITS or digit not in task.named_positions(text):
            raise UserError(f"--target {digit}: use one of A1-A4 that both inputs have, where their answers differ")
        at = task.named_positions(text)[digit] - 1
        return _difference(probed, at, ids[at + 1], source_ids[at + 1], f"answer digit {digit}")
    if task.name == "ioi":
        named = task.named_positions(text)
        return _difference(probed, named["END"], ids[named["IO"]], ids[named["S1"]], "IO against S")
    return _free_text_metric(probed, text, answer, alt)


def _differs(task, text: str, source: str, digit: str) -> bool:
    mine, theirs = task.named_positions(text), task.named_positions(source)
    return digit in mine and digit in theirs and text[mine[digit] - 1] != source[theirs[digit] - 1]


def _difference(probed: ProbedModel, at: int, answer: int, alt: int, what: str) -> Metric:
    tok = probed.task.tokenizer
    description = f"{what}: logit({tok.token_str(answer)}) − logit({tok.token_str(alt)}) at position {at}"
    return Metric(at, answer, alt, description)


def _one_token(probed: ProbedModel, text: str, option: str) -> int:
    ids = probed.task.tokenizer.encode(text)
    if len(ids) != 1:
        raise UserError(f"{option} {text!r} is {len(ids)} tokens in this model's vocabulary; give one token")
    return ids[0]


def _free_text_metric(probed: ProbedModel, text: str, answer: str | None, alt: str | None) -> Metric:
    last = len(probed.task.encode(text)) - 2  # the last text token predicts what comes next
    if answer is None and alt is None:
        return Metric(last, None, None, f"the next-token distribution at position {last}")
    if answer is None or alt is None:
        raise UserError("give both --answer and --alt (or neither, to compare the next-token distributions)")
    return _difference(probed, last, _one_token(probed, answer, "--answer"), _one_token(probed, alt, "--alt"), "answer")
