import random

import pytest

from inversionview.errors import UserError
from inversionview.tasks import CharTokenizer, get_task
from inversionview.tasks.counting import VOCAB


def test_counting_inputs_are_well_formed():
    task = get_task("counting")
    rng = random.Random(0)
    for text in task.sample_texts(rng, 500, split="any"):
        body, _, rest = text.partition("|")
        letter, count = rest[0], int(rest[2])
        assert len(set(body)) == 3 and all(1 <= body.count(c) <= 9 for c in set(body))
        assert body.count(letter) == count
        assert len(task.encode(text)) <= task.max_len


def test_named_positions_point_at_their_tokens():
    task = get_task("counting")
    text = "vvzccvczvv|v:5"
    ids = task.encode(text)
    names = task.named_positions(text)
    tok = task.tokenizer
    assert tok.token_str(ids[names["|"]]) == "|"
    assert tok.token_str(ids[names["query letter"]]) == "v"
    assert tok.token_str(ids[names[":"]]) == ":"
    assert tok.token_str(ids[names["count"]]) == "5"
    assert task.target_positions(text) == [names[":"]]
    assert task.annotate(text) == "count of 'v' = 5"
    assert "input says 4" in task.annotate("vvzccvczvv|v:4")


def test_heldout_split_is_disjoint_and_fixed():
    task = get_task("counting")
    train = set(task.sample_texts(random.Random(1), 2000, split="train"))
    held = set(task.sample_texts(random.Random(2), 300, split="heldout"))
    assert not train & held
    assert all(task.is_heldout(t) for t in held) and not any(task.is_heldout(t) for t in train)


def test_tokenizer_rejects_unknown_characters():
    tok = CharTokenizer(VOCAB, "B", "E", "P")
    with pytest.raises(UserError, match="'#' at index 2"):
        tok.encode("ab#")
    with pytest.raises(UserError, match="not in the vocabulary"):
        tok.encode("abB")  # BOS's stand-in is no text character
    assert tok.decode([tok.bos_id, *tok.encode("ab|a:1"), tok.eos_id]) == "ab|a:1"


def test_tokenizer_rejects_bad_specials():
    with pytest.raises(UserError):
        CharTokenizer("abc", "a", "a", "b")
    with pytest.raises(UserError):
        CharTokenizer("abc", "x", "b", "c")


def test_validate_rejects_non_counting_text():
    task = get_task("counting")
    with pytest.raises(UserError, match="not a counting input"):
        task.validate("abcabc")


def test_ioi_sentences_and_positions():
    from inversionview.tasks.ioi import IOITask

    task = get_task("ioi")
    assert isinstance(task, IOITask)
    query = "Then, Mary and John went to the store. John gave a drink to"
    ids = task.encode(query)
    words = [task.tokenizer.token_str(i).strip() for i in ids]
    positions = task.named_positions(query)
    assert words[positions["IO"]] == "Mary" and words[positions["S1"]] == "John" == words[positions["S2"]]
    assert words[positions["S1+1"]] == "went" and words[positions["END"]] == "to"
    assert task.target_positions(query) == [] and task.target_positions(query + " Mary") == [positions["END"]]
    assert task.tokenizer.decode(ids) == query
    orders = set()
    for text in task.sample_texts(random.Random(3), 200):
        named = task.named_positions(text)
        orders.add("ABBA" if named["IO"] < named["S1"] else "BABA")
        assert text.endswith(task.tokenizer.token_str(task.encode(text)[named["IO"]]).strip())
    assert orders == {"ABBA", "BABA"}
    with pytest.raises(UserError, match="not an IOI sentence"):
        task.validate("Then, Mary and Mary went to the store. Mary gave a drink to")
    with pytest.raises(UserError, match="not in the vocabulary"):
        task.validate("Then, Zork and John went to the store. John gave a drink to")
