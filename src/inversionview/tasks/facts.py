"""Factual recall: ``Aarhus is a city in the country of Denmark``.

Statements about 3,552 real cities (RAVEL, MIT licence: ``data/facts/SOURCE.md``) and three of their
attributes, each asked by several templates; two templates of every relation are held out of
training, so held-out accuracy measures recall through wordings the model never saw. A subword
vocabulary (``BPETokenizer``, trained on these statements) splits most city names into several
tokens, as GPT-2 splits the subjects of the paper's fourth case study.

Positions (BOS = 0): ``subject_first`` and ``subject_last`` (the city's first and last tokens) and
``END``, the last token of the prompt, which predicts the answer's first token. A text may include
the answer (as in training) or stop at END (as a query usually does).
"""

from __future__ import annotations

import functools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from inversionview.errors import UserError
from inversionview.tasks.base import Answer, Feature, Task, logit_difference
from inversionview.tasks.registry import register_task
from inversionview.tasks.tokenizer import BPETokenizer

DATA = Path(__file__).parent / "data" / "facts"
CITIES_FILE, TOKENIZER_FILE = DATA / "cities.json", DATA / "tokenizer.json"
RELATIONS = ("country", "continent", "language")
VOCAB_SIZE = 1024
"""Small enough that most city names take two or more tokens."""

TRAIN_TEMPLATES = {
    "country": (
        "{city} is a city in the country of",
        "{city} is located in the country of",
        "The city of {city} lies in the country of",
        "{city} can be found in the country of",
    ),
    "continent": (
        "{city} is a city on the continent of",
        "{city} is located on the continent of",
        "The city of {city} lies on the continent of",
        "{city} can be found on the continent of",
    ),
    "language": (
        "The language spoken in {city} is",
        "In {city} people speak",
        "People in {city} mostly speak",
        "The main language of {city} is",
    ),
}
HELD_OUT_TEMPLATES = {
    # New combinations of the training templates' words: held-out accuracy asks whether the model
    # recalls through a wording it never saw, not whether it knows words it never saw.
    "country": ("The city of {city} is located in the country of", "{city} lies in the country of"),
    "continent": ("The city of {city} is located on the continent of", "{city} lies on the continent of"),
    "language": ("In the city of {city} people speak", "The main language spoken in {city} is"),
}
POSITION_NAMES = ("subject_first", "subject_last", "END")


@dataclass(frozen=True)
class Prompt:
    """A parsed input: who is asked about, what, in which words, and the answer it goes on with."""

    city: str
    relation: str
    template: str
    answer: str | None

    @property
    def prompt(self) -> str:
        return self.template.format(city=self.city)


@functools.cache
def cities() -> dict[str, dict[str, str]]:
    """City → {country, continent, language}."""
    rows = json.loads(CITIES_FILE.read_text(encoding="utf-8"))
    return {city: dict(zip(RELATIONS, values)) for city, values in rows.items()}


def templates() -> list[tuple[str, str, bool]]:
    """Every template as (relation, template, held out)."""
    return [
        (relation, template, held_out)
        for relation in RELATIONS
        for held_out, table in ((False, TRAIN_TEMPLATES), (True, HELD_OUT_TEMPLATES))
        for template in table[relation]
    ]


def statements() -> list[str]:
    """Every statement of the task: each city, each relation, each template."""
    return [f"{t.format(city=c)} {v[r]}" for c, v in cities().items() for r, t, _ in templates()]


@functools.cache
def _patterns() -> list[tuple[re.Pattern, str, str]]:
    made = []
    for relation, template, _ in templates():
        before, after = (re.escape(part) for part in template.split("{city}"))
        made.append((re.compile(f"{before}(?P<city>.+?){after}(?: (?P<answer>.+))?"), relation, template))
    return made


def parse_prompt(text: str) -> Prompt:
    """The city, relation and template of ``text``, and its answer if it has one."""
    unknown = None
    for pattern, relation, template in _patterns():
        match = pattern.fullmatch(text.strip())
        if match is not None and match["city"] in cities():
            return Prompt(match["city"], relation, template, match["answer"])
        unknown = unknown or (match and match["city"])
    if unknown:  # "The city of X lies in…" also matches "{city} lies in…": a known city wins
        raise UserError(f"unknown city {unknown!r}: the facts model knows the {len(cities())} cities of RAVEL")
    raise UserError(
        f"{text!r} asks no known relation ({', '.join(RELATIONS)}); write it like 'Aarhus is a city in the country of'"
    )


@register_task
class FactsTask(Task):
    name = "facts"
    max_len = 32
    breakdown = "by_relation"

    def __init__(self, tokenizer: BPETokenizer | None = None) -> None:
        self.tokenizer = tokenizer or BPETokenizer(TOKENIZER_FILE.read_text(encoding="utf-8"))

    def sample_text(self, rng: random.Random) -> str:
        relation, template, _ = rng.choice(templates())
        city = rng.choice(list(cities()))
        return f"{template.format(city=city)} {cities()[city][relation]}"

    def is_heldout(self, text: str) -> bool:
        """Held out: the statements of the held-out templates (every city is in both splits)."""
        prompt = parse_prompt(text)
        return prompt.template in HELD_OUT_TEMPLATES[prompt.relation]

    def is_decoder_heldout(self, text: str) -> bool:
        """One prompt (city and template) in ten, over every template: users read the held-out
        templates too (they test the model's recall), so the decoder learns to write them."""
        return self.hashed_out(parse_prompt(text).prompt)

    def enumerate_texts(self) -> list[str]:
        return statements()

    def evaluation_group(self, text: str) -> tuple[str, str]:
        prompt = parse_prompt(text)
        return prompt.relation, "held_out" if prompt.template in HELD_OUT_TEMPLATES[prompt.relation] else "train"

    def validate(self, text: str) -> None:
        super().validate(text)
        parse_prompt(text)

    def spans(self, text: str) -> tuple[Prompt, dict[str, int], int]:
        """The parsed prompt, its named positions (BOS = 0), and the number of tokens of its prompt."""
        prompt = parse_prompt(text)
        start = text.index(prompt.prompt) + prompt.template.index("{city}")
        end = start + len(prompt.city)
        _, offsets = self.tokenizer.encode_with_offsets(text)
        inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        prompt_tokens = len(self.tokenizer.encode(prompt.prompt))
        named = {"subject_first": inside[0] + 1, "subject_last": inside[-1] + 1, "END": prompt_tokens}
        return prompt, named, prompt_tokens

    def named_positions(self, text: str) -> dict[str, int]:
        return self.spans(text)[1]

    def query_position_names(self) -> list[str]:
        return list(POSITION_NAMES)

    def target_positions(self, text: str) -> list[int]:
        """END and the answer's tokens but the last predict the next answer token; the last, EOS."""
        prompt, _, prompt_tokens = self.spans(text)
        if prompt.answer is None:
            return []
        return list(range(prompt_tokens, len(self.tokenizer.encode(text)) + 1))

    def features(self) -> dict[str, Feature]:
        def attribute(name: str) -> Feature:
            return lambda text, position: cities()[parse_prompt(text).city][name]

        return {
            "city": lambda text, position: parse_prompt(text).city,
            **{relation: attribute(relation) for relation in RELATIONS},
            "relation": lambda text, position: parse_prompt(text).relation,
            "template": lambda text, position: parse_prompt(text).template,
            "answer": lambda text, position: cities()[parse_prompt(text).city][parse_prompt(text).relation],
        }

    def first_answer_token(self, prompt: Prompt) -> int:
        """The first token of the true answer to ``prompt``, written after the prompt."""
        return self.tokenizer.encode(f"{prompt.prompt} {cities()[prompt.city][prompt.relation]}")[
            len(self.tokenizer.encode(prompt.prompt))
        ]

    def answer(self, text: str, source: str, *, target=None, answer=None, alt=None) -> Answer:
        """The input's true answer against the source's (their first tokens) at END."""
        if answer is not None or alt is not None:
            return super().answer(text, source, answer=answer, alt=alt)
        prompt, named, _ = self.spans(text)
        mine, theirs = self.first_answer_token(prompt), self.first_answer_token(parse_prompt(source))
        if mine == theirs:
            raise UserError(f"{text!r} and {source!r} have answers that start alike: give a source with another answer")
        return logit_difference(self.tokenizer, named["END"], mine, theirs, "answer against the source's")

    def contrast(self, text: str, rng: random.Random) -> str:
        """Half the time the same city asked another relation in a template of the same shape (when
        there is one), else another city of as many tokens whose answer starts differently."""
        prompt = parse_prompt(text)
        asked_otherwise = _same_shape_templates(self, prompt.template)
        if asked_otherwise and rng.random() < 0.5:
            relation, template = rng.choice(asked_otherwise)
            return f"{template.format(city=prompt.city)} {cities()[prompt.city][relation]}"
        first = self.first_answer_token(prompt)
        for _ in range(200):
            other = rng.choice(_cities_of_length(self)[len(self.tokenizer.encode(f" {prompt.city}"))])
            asked = Prompt(other, prompt.relation, prompt.template, None)
            if other != prompt.city and self.first_answer_token(asked) != first:
                return f"{asked.prompt} {cities()[other][prompt.relation]}"
        raise UserError(f"no contrast city for {text!r}")

    def annotate(self, text: str) -> str | None:
        try:
            prompt = parse_prompt(text)
        except UserError:
            return "not a facts prompt"
        truth = cities()[prompt.city][prompt.relation]
        said = "" if prompt.answer in (None, truth) else f" (says {prompt.answer})"
        return f"{prompt.relation} of {prompt.city} = {truth}{said}"


@functools.cache
def _cities_of_length(task: FactsTask) -> dict[int, list[str]]:
    """Cities by how many tokens they take after a space (a prompt's subject)."""
    by_length: dict[int, list[str]] = {}
    for city in cities():
        by_length.setdefault(len(task.tokenizer.encode(f" {city}")), []).append(city)
    return by_length


def _same_shape_templates(task: FactsTask, template: str) -> list[tuple[str, str]]:
    """Templates of other relations with as many tokens before and after the city as ``template``."""

    def shape(t: str) -> tuple[int, int]:
        before, after = t.split("{city}")
        return len(task.tokenizer.encode(before)) if before.strip() else 0, len(task.tokenizer.encode(after))

    relation = next(r for r, t, _ in templates() if t == template)
    return [(r, t) for r, t, _ in templates() if r != relation and shape(t) == shape(template)]


def build_data(ravel: str | Path) -> None:
    """Write ``cities.json`` from RAVEL's city attributes and train ``tokenizer.json`` on the
    statements (how the shipped files were made: ``data/facts/SOURCE.md``)."""
    rows = json.loads((Path(ravel) / "ravel_city_entity_attributes.json").read_text(encoding="utf-8"))
    table = {
        city: [row["Country"], row["Continent"], _first_language(row["Language"])] for city, row in sorted(rows.items())
    }
    CITIES_FILE.write_text(json.dumps(table, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    cities.cache_clear()
    TOKENIZER_FILE.write_text(BPETokenizer.train(statements(), VOCAB_SIZE).serialized, encoding="utf-8")


REPAIRED = {"Aimar√°": "Aimará", "Ket¬öua": "Quechua"}
"""Two language names that RAVEL's file holds with broken encoding."""


def _first_language(languages: str) -> str:
    first = languages.split(",")[0].strip()
    return REPAIRED.get(first, first)
