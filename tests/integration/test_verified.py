"""Fine-tuning toward precision: the probed model's verdict on the decoder's own samples as reward."""

import json
import random

import torch

from inversionview.cli import main
from inversionview.decoder.build import decoder_sites
from inversionview.decoder.reward import reward_loss
from inversionview.decoder.sampling import sequence_log_probs, token_log_probs
from inversionview.decoder.store import load_decoder
from inversionview.decoder.train import DecoderTrainConfig, train_decoder
from inversionview.probed.distance import EpsilonBall
from inversionview.probed.verify import verify, verify_at_sites
from tests.commands import cli_args


def _queries(probed, n=6):
    """Activations of training inputs at random text positions and sites: (n, d), site ids (n,)."""
    sites = decoder_sites(probed)
    ids, lengths = probed.encode_batch(probed.task.sample_texts(random.Random(3), n))
    site_ids = torch.arange(n) % len(sites)
    acts, _ = probed.activations(ids, sites)
    positions = (lengths - 2).clamp_min(1)
    return torch.stack([acts[sites[s]][i, positions[i]] for i, s in enumerate(site_ids.tolist())]), site_ids


def test_sequence_log_probs_match_the_decoders_token_log_probs(tiny_probed, tiny_decoder_dir):
    decoder = load_decoder(tiny_decoder_dir, tiny_probed)
    tok = tiny_probed.task.tokenizer
    activation, site_ids = _queries(tiny_probed, n=1)
    ids = decoder.generate(
        activation.expand(5, -1), site_ids.expand(5), bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id
    )
    whole = sequence_log_probs(decoder, ids, activation.expand(5, -1), site_ids.expand(5), tok.eos_id)
    per_token = token_log_probs(decoder, ids, activation[0], int(site_ids[0]))
    # Summed up to and including each sample's EOS, and nothing after it.
    eos_at = (ids[:, 1:] == tok.eos_id).float().argmax(-1)
    expected = torch.stack([per_token[i, : eos_at[i] + 1].sum() for i in range(5)])
    torch.testing.assert_close(whole.detach(), expected, rtol=1e-5, atol=1e-4)


def test_a_step_on_the_verified_loss_favours_samples_inside_epsilon(tiny_probed, tiny_decoder_dir):
    decoder = load_decoder(tiny_decoder_dir, tiny_probed)
    sites, tok, metric, group = decoder_sites(tiny_probed), tiny_probed.task.tokenizer, "euclidean", 8
    activation, site_ids = _queries(tiny_probed)
    # The samples the loss will draw (same generator seed), and an ε that splits them in two.
    rows, row_sites = activation.repeat_interleave(group, 0), site_ids.repeat_interleave(group, 0)
    ids = decoder.generate(
        rows,
        row_sites,
        bos_id=tok.bos_id,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        generator=torch.Generator().manual_seed(5),
    )
    distances = verify_at_sites(tiny_probed, sites, ids, rows, row_sites, EpsilonBall(metric, float("inf"))).best
    epsilon = float(distances.median())
    inside = distances <= epsilon
    assert 0 < inside.sum() < len(inside)

    loss, share = reward_loss(
        decoder,
        tiny_probed,
        sites,
        activation,
        site_ids,
        samples=group,
        epsilon=epsilon,
        metric=metric,
        generator=torch.Generator().manual_seed(5),
    )
    assert share == float(inside.float().mean())
    with torch.no_grad():
        before = sequence_log_probs(decoder, ids, rows, row_sites, tok.eos_id)
    loss.backward()
    with torch.no_grad():
        for param in decoder.parameters():
            if param.grad is not None:
                param -= 0.05 * param.grad
        after = sequence_log_probs(decoder, ids, rows, row_sites, tok.eos_id)
    change = after - before
    assert change[inside].mean() > change[~inside].mean()

    # Groups that all land on one side teach nothing.
    loss, share = reward_loss(
        decoder, tiny_probed, sites, activation, site_ids, samples=group, epsilon=float("inf"), metric=metric
    )
    assert share == 1.0 and loss.item() == 0.0 and not loss.requires_grad


def test_training_with_verified_queries_records_their_share(tiny_probed, tiny_probed_dir, tiny_decoder_dir, tmp_path):
    config = DecoderTrainConfig(
        init_from=str(tiny_decoder_dir),
        steps=4,
        batch_size=16,
        eval_every=2,
        eval_queries=2,
        eval_samples=4,
        warmup=1,
        lr=1e-4,
        verified_queries=4,
        verified_samples=4,
        epsilon=0.5,
    )
    train_decoder(tiny_probed, config, tmp_path, progress=False)
    meta = json.loads((tmp_path / "decoder.json").read_text())
    history = meta["provenance"]["history"]
    assert [h["step"] for h in history] == [2, 4]
    assert all(0.0 <= h["verified_share"] <= 1.0 for h in history)
    assert meta["provenance"]["recipe"]["verified_queries"] == 4

    # A query needs two samples at least: its samples are their own baseline.
    verified = {"verified_queries": 4, "verified_samples": 1}
    code = main(cli_args("train-decoder", probed=tiny_probed_dir, out=tmp_path / "bad", **verified))
    assert code == 2


def test_samples_are_judged_the_same_one_site_at_a_time_and_all_sites_at_once(tiny_probed, tiny_decoder_dir):
    """The reward judges its samples at several sites in one run; a reading, one site at a time."""
    decoder = load_decoder(tiny_decoder_dir, tiny_probed)
    sites, tok = decoder_sites(tiny_probed), tiny_probed.task.tokenizer
    activation, site_ids = _queries(tiny_probed)
    ids = decoder.generate(activation, site_ids, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id).cpu()
    ball = EpsilonBall("euclidean", 0.3)
    together = verify_at_sites(tiny_probed, sites, ids, activation, site_ids, ball)
    for row, site in enumerate(site_ids.tolist()):
        alone = verify(tiny_probed, sites[site], ids[row : row + 1], activation[row], ball)
        torch.testing.assert_close(alone.best, together.best[row : row + 1], rtol=1e-5, atol=1e-5)
        assert bool(alone.inside[0]) == bool(together.inside[row]) == bool(ball.contains(float(alone.best[0])))
