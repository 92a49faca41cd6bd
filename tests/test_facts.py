"""The facts task (RAVEL cities), its evaluation by relation, and head-share on a tiny real model."""

from __future__ import annotations

import json
import random

import pytest

from inversionview.causal.heads import head_share, rank_agreement
from inversionview.cli import main
from inversionview.errors import UserError
from inversionview.probed import load_probed
from inversionview.probed.train import ProbedTrainConfig, evaluate_probed, train_probed
from inversionview.tasks import get_task
from inversionview.tasks.facts import RELATIONS, cities, parse_prompt, statements, templates


@pytest.fixture(scope="module")
def facts_dir(tmp_path_factory):
    """A 2-layer, 4-head facts model trained for a few real steps."""
    out = tmp_path_factory.mktemp("facts")
    config = ProbedTrainConfig(
        task="facts", d_model=32, n_heads=4, steps=20, batch_size=64, eval_every=20, eval_size=100
    )
    train_probed(config, out, progress=False)
    return out


def test_the_shipped_facts_are_ravel_cities_with_three_relations():
    table = cities()
    assert len(table) == 3552 and table["Aarhus"] == {"country": "Denmark", "continent": "Europe", "language": "Danish"}
    for relation in RELATIONS:
        asked = [t for r, t, _ in templates() if r == relation]
        held_out = [t for r, t, h in templates() if r == relation and h]
        assert len(asked) >= 5 and 1 <= len(held_out) < len(asked)
    assert "{city} is a city in the country of" in [t for _, t, _ in templates()]


def test_city_names_span_several_subword_tokens_and_every_statement_fits():
    task = get_task("facts")
    lengths = [len(task.tokenizer.encode(f" {city}")) for city in cities()]
    assert sum(n >= 2 for n in lengths) / len(lengths) > 0.9
    assert max(len(task.encode(text)) for text in statements()) <= task.max_len


def test_positions_name_the_subject_and_the_answer_position():
    task = get_task("facts")
    text = "The city of Aarhus lies in the country of Denmark"
    named = task.named_positions(text)
    shown = [task.tokenizer.token_str(i) for i in task.encode(text)]
    assert "".join(shown[named["subject_first"] : named["subject_last"] + 1]) == "␣Aarhus"
    assert shown[named["END"]] == "␣of" and shown[named["END"] + 1].startswith("␣Den")
    assert task.target_positions(text)[0] == named["END"]
    assert task.features()["country"](text, named["END"]) == "Denmark"
    assert parse_prompt("The city of Aarhus lies in the country of").answer is None


def test_contrasts_keep_the_positions_and_change_the_answer():
    task, rng = get_task("facts"), random.Random(0)
    kinds = set()
    for text in task.sample_texts(rng, 60):
        source = task.contrast(text, rng)
        assert task.named_positions(source) == task.named_positions(text)
        mine, theirs = parse_prompt(text), parse_prompt(source)
        kinds.add("city" if mine.city != theirs.city else "relation")
        metric = task.answer(text, source)
        assert metric.answer != metric.alt and metric.position == task.named_positions(text)["END"]
    assert kinds == {"city", "relation"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("Narnia is a city in the country of", "unknown city 'Narnia'"),
        ("Aarhus is famous for its", "asks no known relation"),
        ("Aarhus is a city in the country of " + "Denmark " * 40, "at most"),
    ],
)
def test_bad_prompts_are_one_line_errors(text, message):
    with pytest.raises(UserError, match=message):
        get_task("facts").validate(text)


def test_evaluate_reports_train_and_held_out_templates_by_relation(facts_dir, capsys):
    probed = load_probed(str(facts_dir))
    result = evaluate_probed(probed, n=300)
    assert set(result.groups) == set(RELATIONS)
    assert all(set(columns) == {"train", "held_out"} for columns in result.groups.values())
    assert main(["evaluate", "--probed", str(facts_dir), "--n", "300", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"accuracy", "n", "by_relation"} and report["accuracy"] == result.accuracy


def test_head_share_ranks_every_head_beside_its_patching_effect(facts_dir, tmp_path, capsys):
    probed = load_probed(str(facts_dir))
    result = head_share(probed, 20)
    assert len(result.heads) == len(result.share) == len(result.patch_effect) == probed.n_layers * probed.n_heads
    assert all(0 <= s <= 1 for s in result.share) and result.n == 20
    plot = tmp_path / "heads.png"
    assert main(["head-share", "--probed", str(facts_dir), "--n", "20", "--json", "--plot", str(plot)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"heads", "share", "patch_effect", "rank_agreement", "n"} and plot.stat().st_size > 1000
    assert main(["head-share", "--probed", str(facts_dir), "--n", "0"]) == 2


def test_the_shares_of_a_layer_sum_to_one_where_any_head_is_near_the_stream(facts_dir):
    from inversionview.causal.heads import normalised_proximity

    probed = load_probed(str(facts_dir))
    shares = normalised_proximity(probed, get_task("facts").sample_texts(random.Random(1), 8))
    sums = shares.sum(-1)
    assert ((sums - 1).abs() < 1e-5).logical_or(sums == 0).all()


def test_rank_agreement_is_one_for_the_same_ranking_and_negative_for_its_reverse():
    values = [float(v) for v in range(12)]
    assert rank_agreement(values, values) == {"top_overlap": 1.0, "spearman": 1.0}
    assert rank_agreement(values, values[::-1])["spearman"] < 0
