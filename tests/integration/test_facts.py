"""The facts task (RAVEL cities), its evaluation by relation, and head-share on a tiny real model."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch

from inversionview.causal.heads import head_share, rank_agreement
from inversionview.cli import main
from inversionview.decoder.build import site_scales
from inversionview.errors import UserError
from inversionview.probed import load_probed
from inversionview.probed.train import ProbedTrainConfig, evaluate_probed, train_probed
from inversionview.tasks import get_task
from inversionview.tasks.facts import RELATIONS, cities, parse_prompt, statements, templates
from tests.commands import cli_args


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


def test_the_decoder_learns_every_template_and_holds_out_other_prompts():
    # The probed model's held-out templates are read too (they test its recall), so the decoder
    # trains on them; its own held-out split is one prompt in ten, whether or not it has its answer.
    task, rng = get_task("facts"), random.Random(0)
    train = task.sample_texts(rng, 3000, decoder=True)
    held = task.sample_texts(rng, 300, split="heldout", decoder=True)
    assert {parse_prompt(t).template for t in train} == {t for _, t, _ in templates()}
    assert {parse_prompt(t).template for t in held} == {t for _, t, _ in templates()}
    assert not {parse_prompt(t).prompt for t in train} & {parse_prompt(t).prompt for t in held}
    assert all(task.is_decoder_heldout(parse_prompt(t).prompt) for t in held)
    assert any(task.is_heldout(t) for t in train) and not all(task.is_heldout(t) for t in held)


def test_the_decoder_scales_its_sites_on_its_own_training_inputs(facts_dir, monkeypatch):
    # The probed model's held-out templates are among the decoder's training inputs; its own
    # held-out prompts are not.
    probed, task = load_probed(str(facts_dir)), get_task("facts")
    encoded = []
    encode = probed.encode_batch
    monkeypatch.setattr(probed, "encode_batch", lambda texts: encoded.extend(texts) or encode(texts))
    scales = site_scales(probed, [probed.site("blocks.0.hook_resid_post")], random.Random(0), n=300)
    assert scales.shape == (1,) and float(scales[0]) > 0
    assert not any(task.is_decoder_heldout(parse_prompt(t).prompt) for t in encoded)
    assert any(task.is_heldout(t) for t in encoded)


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


@pytest.fixture(scope="module")
def tiny_gpt2_pair(tmp_path_factory):
    """Two GPT-2s with one byte-level BPE tokenizer trained on the facts: a narrow one to read (as
    GPT-2 XL is read) and a wider one to start its decoder from (as GPT-2 Medium is)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    out = tmp_path_factory.mktemp("gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        random.Random(0).sample(statements(), 2000), vocab_size=400, special_tokens=["<|endoftext|>"]
    )
    special = "<|endoftext|>"
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=special, eos_token=special, unk_token=special
    )
    dirs = {}
    for name, width in (("probed", 32), ("start", 48)):
        torch.manual_seed(0)
        dirs[name] = out / name
        tokenizer.save_pretrained(dirs[name])
        ids = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id}
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=width, n_layer=2, n_head=4, **ids)
        GPT2LMHeadModel(config).save_pretrained(dirs[name])
    return dirs


def test_the_study_runs_on_a_hugging_face_gpt2_with_its_own_tokenizer(tiny_gpt2_pair, tmp_path, capsys):
    """The GPT-2 XL commands of docs/factual-recall.md on a tiny GPT-2: head-share, a decoder from a
    pretrained start, and a reading with --explain at a named position."""
    probed, start = tiny_gpt2_pair["probed"], tiny_gpt2_pair["start"]
    model = {"probed": probed, "task": "facts"}
    assert main(cli_args("head-share", n=12, json=True, **model)) == 0
    share = json.loads(capsys.readouterr().out)
    assert len(share["heads"]) == 8 and all(effect is not None for effect in share["patch_effect"])
    head = max(share["heads"], key=lambda h: share["patch_effect"][share["heads"].index(h)])
    decoder = tmp_path / "decoder"
    sites = f"{head},blocks.0.hook_resid_post"
    assert (
        main(
            cli_args(
                "train-decoder",
                **model,
                init_from=start,
                steps=2,
                batch_size=8,
                positions="named",
                sites=sites,
                out=decoder,
            )
        )
        == 0
    )
    assert json.loads((decoder / "decoder.json").read_text())["config"]["d_model"] == 48
    capsys.readouterr()
    query = {"input": "Aarhus is a city in the country of", "position": "END", "site": head}
    assert main(cli_args("invert", **model, decoder=decoder, **query, samples=16, explain=True, json=True)) == 0
    reading = json.loads(capsys.readouterr().out)
    tokens = reading["query"]["tokens"]
    assert reading["query"]["position"] == len(tokens) - 1 and tokens[-1] == "␣of"
    features = {row["name"]: row for row in reading["features"]}
    assert features["country"]["query_value"] == "Denmark" and features["city"]["query_value"] == "Aarhus"


@pytest.mark.parametrize(
    "text, position, message",
    [
        ("Narnia is a city in the country of", "END", "unknown city 'Narnia'"),
        ("Aarhus is famous for its", "END", "asks no known relation"),
        ("Aarhus is a city in the country of " + "Denmark " * 40, "END", "at most"),
        ("Aarhus is a city in the country of", "S2", "no position named 'S2'.*subject_first, subject_last, END"),
    ],
)
def test_a_bad_query_is_refused_in_one_line_before_any_decoder_loads(text, position, message, capsys, tmp_path):
    # The bundled facts model; the folder named as its decoder holds none, and is never opened,
    # since the query is checked first.
    query = {"input": text, "position": position, "site": "blocks.0.hook_resid_post"}
    assert main(cli_args("invert", probed="facts", decoder=tmp_path, **query)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err)
