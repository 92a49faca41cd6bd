"""The race to the first 100 distinct preimage members: decoder against brute force, in one run.

    python benchmarks/preimage_race.py [--queries 8]         # seeded held-out queries with small preimages
    python benchmarks/preimage_race.py --input 615+861=1476 --position 8 --site blocks.1.hook_resid_post

Without --input, queries are drawn with a fixed seed from held-out inputs, across the decoder's sites
and the task's named positions, and kept when their exact preimage has 100 to 8,100 members (at most
1 % of the space, so that a random scan needs about 10,000 evaluations or more); the race runs on the
first --queries of them and prints the median ratio.

Three searchers, each counted in probed-model evaluations (inputs run through the probed model)
and seconds:
- decoder: sample 100 at a time from the decoder, verify, stop at 100 distinct members;
- decoder, distinct: draw without replacement (``--schedule distinct``) and verify in draw order,
  100 at a time; a draw of 1,000 that runs out is followed by one of 10,000, and so on (all counted);
- random scan: run the probed model over the input space in a seeded random order, 1,000 at a time;
- nearest-neighbour index: cache the activations of random inputs (every position), then rank the
  cached inputs by distance to the query; its cost is the size of index it needs to hold 100 members.
A searcher that does not reach 100 within the whole space reports how many it found.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from inversionview.decoder.sampling import distinct_sample_ids, sample_ids
from inversionview.decoder.store import load_decoder
from inversionview.exact.completeness import spread_queries
from inversionview.exact.preimage import exact_preimages
from inversionview.exact.space import input_space
from inversionview.probed import load_probed
from inversionview.probed.distance import best_positions, position_distances
from inversionview.probed.verify import query_activation, queryable, verify_ids

TARGET = 100


def decoder_search(probed, decoder, site, query, epsilon, limit, seed):
    started, generator = time.perf_counter(), torch.Generator().manual_seed(seed)
    found, evaluations = set(), 0
    while len(found) < TARGET and evaluations < limit:
        ids = sample_ids(decoder, probed, site, query.expand(100, -1), temperature=1.0, generator=generator)
        best, _ = best_positions(verify_ids(probed, site, ids, query, "euclidean"))
        evaluations += len(ids)
        found.update(tuple(row) for row, d in zip(ids.tolist(), best.tolist()) if d <= epsilon)
    return len(found), evaluations, time.perf_counter() - started


def distinct_search(probed, decoder, site, query, epsilon, limit, seed, first_draw=1000):
    started = time.perf_counter()
    found = evaluations = 0
    draw = first_draw
    while evaluations < limit:
        generator = torch.Generator().manual_seed(seed)
        ids = distinct_sample_ids(decoder, probed, site, query, min(draw, limit), generator=generator)
        found = 0  # each draw starts afresh; its samples are all different inputs
        for start in range(0, len(ids), 100):
            best, _ = best_positions(verify_ids(probed, site, ids[start : start + 100], query, "euclidean"))
            evaluations += len(best)
            found += int((best <= epsilon).sum())
            if found >= TARGET:
                return found, evaluations, time.perf_counter() - started
        draw *= 10
    return found, evaluations, time.perf_counter() - started


def random_scan(probed, site, query, epsilon, space, seed, chunk=1000):
    started = time.perf_counter()
    order = torch.randperm(space.size, generator=torch.Generator().manual_seed(seed))
    found = evaluations = 0
    for start in range(0, space.size, chunk):
        ids = space.ids[order[start : start + chunk]]
        best, _ = best_positions(verify_ids(probed, site, ids, query, "euclidean"))
        evaluations += len(ids)
        found += int((best <= epsilon).sum())
        if found >= TARGET:
            break
    return found, evaluations, time.perf_counter() - started


def index_search(probed, site, query, epsilon, space, seed, step=10_000):
    """Grow a cached index of random inputs' activations until ranking it yields 100 members.

    Ranking the index by distance to the query puts its members first, so the index holds 100
    members as soon as 100 of its inputs lie within ε; each new slice is ranked as it is added."""
    started = time.perf_counter()
    order = torch.randperm(space.size, generator=torch.Generator().manual_seed(seed + 1))
    eos = probed.task.tokenizer.eos_id
    found = size = 0
    for start in range(0, space.size, step):
        ids = space.ids[order[start : start + step]]
        acts = probed.activations(ids, [site])[0][site]
        best, _ = best_positions(position_distances(query, acts, queryable(ids, eos), "euclidean"))
        size += len(ids)
        found += int((best <= epsilon).sum())
        if found >= TARGET:
            break
    return min(found, TARGET), size, time.perf_counter() - started


def small_preimage_queries(probed, count, seed, epsilon, candidates=60):
    """Held-out queries spread over sites and positions whose exact preimage has 100 to 1 % of the space."""
    queries = spread_queries(probed, candidates, seed)
    exacts = exact_preimages(probed, queries, epsilon=epsilon, limit=0)
    small = [q for q, e in zip(queries, exacts, strict=True) if TARGET <= e.n_members <= e.space_size // 100]
    sizes = {q: e.n_members for q, e in zip(queries, exacts, strict=True)}
    return [(q, sizes[q]) for q in small[:count]]


def race(probed, decoder, space, text, position, site_name, epsilon, seed):
    site = probed.site(site_name)
    query = query_activation(probed, site, text, position)
    rows = [
        ("decoder", *decoder_search(probed, decoder, site, query, epsilon, space.size, seed)),
        ("decoder, distinct", *distinct_search(probed, decoder, site, query, epsilon, space.size, seed)),
        ("random scan", *random_scan(probed, site, query, epsilon, space, seed)),
        ("nearest-neighbour index", *index_search(probed, site, query, epsilon, space, seed)),
    ]
    print(f"{'searcher':24s} {'members':>8s} {'evaluations':>12s} {'seconds':>8s}")
    for name, found, evaluations, seconds in rows:
        print(f"{name:24s} {found:8d} {evaluations:12,d} {seconds:8.2f}")
    ratio, distinct_ratio = rows[2][2] / rows[0][2], rows[2][2] / rows[1][2]
    print(f"random scan / decoder evaluations: {ratio:.1f}x (distinct: {distinct_ratio:.1f}x)", flush=True)
    return ratio, distinct_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probed", default="addition")
    parser.add_argument("--decoder", default=None)
    parser.add_argument("--input", help="race on this one query (with --position and --site)")
    parser.add_argument("--position", type=int, default=8)
    parser.add_argument("--site", default="blocks.1.hook_resid_post")
    parser.add_argument("--queries", type=int, default=8, help="seeded small-preimage queries, without --input")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    probed = load_probed(args.probed)
    decoder = load_decoder(args.decoder, probed)
    space = input_space(probed.task)
    if args.input:
        chosen = [((args.input, args.position, args.site), None)]
    else:
        chosen = small_preimage_queries(probed, args.queries, args.seed, args.epsilon)
    ratios = []
    for (text, position, site), size in chosen:
        members = "" if size is None else f", {size:,} members"
        print(f"\nquery {text!r} @ {position}, {site}, ε = {args.epsilon}; space {space.size:,} inputs{members}")
        ratios.append(race(probed, decoder, space, text, position, site, args.epsilon, args.seed))
    if len(ratios) > 1:
        plain, distinct = statistics.median(r for r, _ in ratios), statistics.median(d for _, d in ratios)
        print(f"\nmedian random scan / decoder evaluations over {len(ratios)} queries: {plain:.1f}x")
        print(f"the same with the decoder drawing without replacement: {distinct:.1f}x")
        print(f"queries at 10x or more: {sum(r >= 10 for r, _ in ratios)} of {len(ratios)}")


if __name__ == "__main__":
    main()
