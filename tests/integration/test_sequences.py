"""Token-sequence tasks: inputs over a token list, written with spaces or run together, drawn
uniformly or by the user's generator, listed whole for exact preimages; bad options end in one line."""

from __future__ import annotations

import random

import pytest

from inversionview.cli import main
from inversionview.errors import UserError
from inversionview.tasks import get_task, tokenizer_from_dict
from tests.commands import cli_args

OPTIONS = {"tokens": "BOS,a,b,c,pad", "bos": "BOS", "pad": "pad", "length": "2-3"}


def test_inputs_are_written_run_together_or_spaced_and_encoded_from_bos():
    task = get_task("sequences", **OPTIONS)
    assert task.encode("abc") == [0, 1, 2, 3, 4]  # BOS, a, b, c, then the padding ends the input
    assert task.encode("a b c") == task.encode("abc")
    words = get_task("sequences", tokens="<s>,the,cat,sat,</s>", bos="<s>", pad="</s>", length=3)
    assert words.encode("the cat sat") == [0, 1, 2, 3, 4]
    assert words.tokenizer.decode(words.encode("sat the cat")) == "sat the cat"
    again = tokenizer_from_dict(task.tokenizer.to_dict())
    assert again.encode("cab") == task.tokenizer.encode("cab")


def test_the_space_is_listed_whole_and_sampled_inputs_belong_to_it():
    task = get_task("sequences", **OPTIONS)
    space = task.enumerate_texts()
    assert len(space) == 3**2 + 3**3 == len(set(space))
    assert set(task.sample_texts(random.Random(0), 200, split="any")) <= set(space)
    assert get_task("sequences", **OPTIONS | {"length": 20}).enumerate_texts() is None  # 3**20 inputs: sampled


def test_features_count_tokens_so_far_and_in_all():
    features = get_task("sequences", **OPTIONS).features()
    assert features["token read"]("cab", 2) == "a"
    assert features["count of a so far"]("aba", 2) == 1
    assert features["count of a"]("aba", 2) == 2
    assert features["token 3"]("abc", 1) == "c"


def test_a_generator_draws_the_inputs(tmp_path):
    generator = tmp_path / "inputs.py"
    generator.write_text("def sample(rng):\n    n = rng.randint(1, 2)\n    return ['a'] * n + ['b']\n")
    task = get_task("sequences", **OPTIONS | {"inputs": str(generator)})
    assert set(task.sample_texts(random.Random(0), 50, split="any")) == {"ab", "aab"}
    assert task.enumerate_texts() is None  # a generator's space is sampled, not listed
    generator.write_text("def sample(rng):\n    return ['a', 'z']\n")
    with pytest.raises(UserError, match="'z'"):
        get_task("sequences", **OPTIONS | {"inputs": str(generator)}).sample_text(random.Random(0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tokens": "BOS,a,a,pad"}, "repeats 'a'"),
        ({"length": "0"}, "at least 1 token"),
        ({"inputs": "GENERATOR"}, "not a token"),
    ],
)
def test_bad_options_are_one_line_errors(tiny_probed_dir, tmp_path, capsys, change, message):
    generator = tmp_path / "stray.py"
    generator.write_text("def sample(rng):\n    return ['a', 'q']\n")
    options = OPTIONS | {k: str(generator) if v == "GENERATOR" else v for k, v in change.items()}
    command = cli_args(
        "exact",
        probed=tiny_probed_dir,
        task="sequences",
        **options,
        input="ab",
        position=-1,
        site="blocks.0.hook_resid_post",
        space_sample=50,
    )
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_contrast_changes_one_token_and_keeps_the_length():
    task, rng = get_task("sequences", **OPTIONS), random.Random(0)
    for text in task.sample_texts(rng, 30, split="any"):
        other = task.contrast(text, rng)
        assert len(other) == len(text) and sum(a != b for a, b in zip(text, other)) == 1
