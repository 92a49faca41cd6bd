"""Verified refinement and the evaluation cache: every probed-model evaluation counted, and counted once."""

import json

import torch

from inversionview.cli import main
from inversionview.decoder.draws import draw_samples
from inversionview.decoder.refine import refine
from inversionview.decoder.sampling import sample_ids
from inversionview.decoder.schedule import parse_schedule
from inversionview.decoder.store import load_decoder
from inversionview.exact.completeness import members_for_evaluations
from inversionview.inversion.invert import invert
from inversionview.probed.distance import best_positions
from inversionview.probed.query import resolve_query
from inversionview.probed.verify import _distances, sequence_lengths, verify_ids

QUERY = ("615+861=1476", 8, "blocks.1.hook_resid_post")
WIDE = 0.6
"""An ε wide enough that the tiny, barely trained models have members and near misses."""


def test_repeated_inputs_are_run_once_and_read_the_same(tiny_addition):
    site = tiny_addition.site(QUERY[2])
    query = resolve_query(tiny_addition, *QUERY, "euclidean").activation
    ids, _ = tiny_addition.encode_batch(["615+861=1476", "100+100=200", "615+861=1476", "615+861=1476"])
    merged = verify_ids(tiny_addition, site, ids, query, "euclidean")
    one_by_one = torch.cat([_distances(tiny_addition, site, ids[i : i + 1], query, "euclidean", 1) for i in range(4)])
    torch.testing.assert_close(merged, one_by_one)


def test_a_decoder_continues_a_given_prefix(tiny_addition, tiny_addition_decoder_dir):
    decoder = load_decoder(tiny_addition_decoder_dir, tiny_addition)
    site = tiny_addition.site(QUERY[2])
    query = resolve_query(tiny_addition, *QUERY, "euclidean").activation
    prefix, _ = tiny_addition.encode_batch(["615+861=1476"] * 6)
    prefix = torch.nn.functional.pad(prefix, (0, decoder.config.max_len - prefix.shape[1]), value=prefix[0, -1].item())
    keep = torch.tensor([1, 2, 4, 6, 9, 12])
    generator = torch.Generator().manual_seed(0)
    ids = sample_ids(
        decoder,
        tiny_addition,
        site,
        query.expand(6, -1),
        temperature=1.0,
        generator=generator,
        prefix=prefix,
        keep=keep,
    )
    for row, kept in enumerate(keep.tolist()):
        assert ids[row, :kept].tolist() == prefix[row, :kept].tolist()
    assert (sequence_lengths(ids, tiny_addition.task.tokenizer.eos_id) > keep).all()  # EOS written after


def _drawn(probed, decoder, n: int, seed: int):
    """``n`` decoder samples for ``QUERY`` at T = 1, verified: site, query, ids, best distances and positions."""
    site = probed.site(QUERY[2])
    query = resolve_query(probed, *QUERY, "euclidean").activation
    ids = sample_ids(
        decoder, probed, site, query.expand(n, -1), temperature=1.0, generator=torch.Generator().manual_seed(seed)
    )
    best, at = best_positions(verify_ids(probed, site, ids, query, "euclidean"))
    return site, query, ids, best, at


def test_refinement_finds_new_members_and_counts_its_evaluations(tiny_addition, tiny_addition_decoder_dir):
    decoder = load_decoder(tiny_addition_decoder_dir, tiny_addition)
    site, query, ids, best, at = _drawn(tiny_addition, decoder, 300, seed=1)
    options = {"metric": "euclidean", "epsilon": WIDE, "seed": 0}
    none = refine(decoder, tiny_addition, site, query, ids, best, at, evaluations_per_sample=0, **options)
    distinct = len({tuple(row) for row in ids.tolist()})
    assert none.with_refinement.evaluations == distinct  # a repeat costs nothing
    assert none.with_refinement.members == none.without.members == int((best <= WIDE).sum())
    assert none.without.evaluations == 300 and len(none.ids) == 0
    found = refine(decoder, tiny_addition, site, query, ids, best, at, evaluations_per_sample=8, **options)
    assert len(found.ids) > 0
    spent = found.with_refinement.evaluations - distinct
    assert 0 < spent <= 8 * distinct
    assert found.with_refinement.distinct_members == found.without.distinct_members + len(found.ids)
    # Every member refinement reports is one, and none was drawn already.
    assert (best_positions(verify_ids(tiny_addition, site, found.ids, query, "euclidean"))[0] <= WIDE).all()
    drawn = {tuple(row) for row in ids.tolist()}
    assert not drawn & {tuple(row) for row in found.ids.tolist()}


def test_invert_refine_keeps_the_precision_and_adds_its_counts(tiny_addition, tiny_addition_decoder_dir):
    decoder = load_decoder(tiny_addition_decoder_dir, tiny_addition)
    options = {"samples": 200, "seed": 3, "epsilon": WIDE}
    plain = invert(tiny_addition, decoder, *QUERY, **options)
    refined = invert(tiny_addition, decoder, *QUERY, refine=6, **options)
    assert refined.precision == plain.precision and plain.refined is None
    drawn = [s for s in refined.samples if not s.refined and not s.boundary_search]
    assert sorted(s.text for s in drawn) == sorted(s.text for s in plain.samples if not s.boundary_search)
    extra = [s for s in refined.samples if s.refined]
    assert len(extra) == refined.refined["distinct_members"] - refined.refined["without_refinement"]["distinct_members"]
    assert all(s.in_preimage for s in extra)
    assert refined.refined["without_refinement"]["evaluations"] == 200


def test_cli_refine_json_and_its_refusal(tiny_addition_dir, tiny_addition_decoder_dir, capsys):
    base = ["invert", "--probed", str(tiny_addition_dir), "--decoder", str(tiny_addition_decoder_dir)]
    base += ["--input", QUERY[0], "--position", "8", "--site", QUERY[2], "--samples", "100", "--epsilon", str(WIDE)]
    assert main([*base, "--refine", "4", "--json"]) == 0
    refined = json.loads(capsys.readouterr().out)["refined"]
    keys = {"members", "distinct_members", "evaluations", "members_per_1000_evaluations"}
    assert keys <= set(refined) and keys == set(refined["without_refinement"])
    assert main([*base, "--refine", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--refine" in err


def test_a_budget_of_evaluations_is_kept(tiny_addition, tiny_addition_decoder_dir):
    decoder = load_decoder(tiny_addition_decoder_dir, tiny_addition)
    query = resolve_query(tiny_addition, *QUERY, "euclidean")
    options = {"schedule": parse_schedule("auto"), "metric": "euclidean", "epsilon": WIDE, "chunk": 100}
    cached = members_for_evaluations(decoder, tiny_addition, query, 150, refine_per_sample=0, **options)
    refined = members_for_evaluations(decoder, tiny_addition, query, 150, refine_per_sample=4, **options)
    assert cached.evaluations == refined.evaluations == 150
    # Every batch still brings new inputs, so refinement takes no evaluation from the draws.
    assert refined.member_texts == cached.member_texts and refined.samples == cached.samples
    assert cached.samples >= 150  # repeats are drawn at no cost
    assert cached.members >= len(cached.member_texts) > 0


def test_refinement_runs_no_input_twice(tiny_addition, tiny_addition_decoder_dir):
    decoder = load_decoder(tiny_addition_decoder_dir, tiny_addition)
    site, query, ids, best, at = _drawn(tiny_addition, decoder, 100, seed=2)
    distinct = len({tuple(row) for row in ids.tolist()})
    options = {"evaluations_per_sample": 4, "metric": "euclidean", "epsilon": WIDE, "seed": 5}  # one round a sample
    known: dict[tuple, float] = {}
    first = refine(decoder, tiny_addition, site, query, ids, best, at, known=known, **options)
    spent = first.with_refinement.evaluations - distinct
    assert spent > 0 and len(known) == distinct + spent  # the drawn inputs and every candidate run, once each
    # The same seed draws the same candidates again: all of them already run, so none costs anything.
    again = refine(decoder, tiny_addition, site, query, ids, best, at, known=known, **options)
    assert again.with_refinement.evaluations == distinct and len(again.ids) == 0


def test_refinement_waits_until_the_decoder_runs_dry(tiny_addition, tiny_addition_decoder_dir):
    decoder = load_decoder(tiny_addition_decoder_dir, tiny_addition)
    query = resolve_query(tiny_addition, *QUERY, "euclidean")
    greedy = parse_schedule(None, 0.0)  # one input, drawn again and again: every batch is dry
    (ids, _, _), *_ = draw_samples(decoder, tiny_addition, query, 1, greedy, torch.Generator())
    distance = float(best_positions(verify_ids(tiny_addition, query.site, ids, query.activation, "euclidean"))[0])
    options = {"schedule": greedy, "metric": "euclidean", "epsilon": 0.75 * distance, "chunk": 20}  # a near miss
    cached = members_for_evaluations(decoder, tiny_addition, query, 40, refine_per_sample=0, **options)
    assert cached.evaluations == 1 and cached.samples == 4000  # draws are free; the budget is left unspent
    refined = members_for_evaluations(decoder, tiny_addition, query, 40, refine_per_sample=8, **options)
    # The first dry batch gives the one near miss up to its 8 candidates (a repeat among them free).
    assert 1 < refined.evaluations <= 1 + 8
    # A budget too small for the near miss's 8 candidates refines nothing; one just large enough is kept.
    short = members_for_evaluations(decoder, tiny_addition, query, 8, refine_per_sample=8, **options)
    assert short.evaluations == 1
    exact = members_for_evaluations(decoder, tiny_addition, query, 9, refine_per_sample=8, **options)
    assert exact.evaluations == refined.evaluations <= 9
