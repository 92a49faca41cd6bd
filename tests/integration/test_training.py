"""Real training steps: loss goes down, checkpoints resume, decoders save and reload exactly."""

import json

import pytest
import torch
import torch.nn.functional as F

from inversionview.decoder.build import decoder_sites, new_decoder
from inversionview.decoder.model import Decoder, DecoderConfig, occurrence_numbers
from inversionview.decoder.store import load_decoder
from inversionview.decoder.train import DecoderTrainConfig, train_decoder
from inversionview.probed import load_probed
from inversionview.probed.train import ProbedTrainConfig, train_probed
from inversionview.storage import CHECKPOINT_STATE_FILE, PROBED_META_FILE


def test_probed_training_learns_and_resumes(tmp_path):
    config = ProbedTrainConfig(d_model=32, steps=60, batch_size=64, lr=3e-3, eval_every=30, eval_size=200, warmup=10)
    first = ProbedTrainConfig(**{**config.__dict__, "steps": 30})
    train_probed(first, tmp_path, progress=False)
    assert json.loads((tmp_path / CHECKPOINT_STATE_FILE).read_text())["step"] == 30
    # Same directory, longer run: it resumes at step 30 rather than starting over.
    probed = train_probed(config, tmp_path, progress=False)
    meta = json.loads((tmp_path / PROBED_META_FILE).read_text())
    history = meta["provenance"]["history"]
    assert [h["step"] for h in history] == [30, 60]
    assert meta["provenance"]["steps"] == 60
    # The full-sequence loss falls well below its start (ln 40 ≈ 3.7 for a uniform guess).
    assert history[-1]["loss"] < 3.0
    assert load_probed(str(tmp_path)).content_hash == probed.content_hash


def test_decoder_training_reduces_loss_and_reloads(tiny_probed, tmp_path):
    config = DecoderTrainConfig(
        d_model=32,
        n_heads=2,
        n_layers=1,
        steps=80,
        batch_size=32,
        eval_every=40,
        eval_queries=2,
        eval_samples=4,
        warmup=5,
        lr=1e-2,
    )
    decoder = train_decoder(tiny_probed, config, tmp_path, progress=False)
    meta = json.loads((tmp_path / "decoder.json").read_text())
    history = meta["provenance"]["history"]
    assert [h["step"] for h in history] == [40, 80]
    assert history[-1]["loss"] < 3.0  # from ln(40) ≈ 3.69 at the start
    assert set(history[-1]["precision"]) == {s.name for s in decoder_sites(tiny_probed)}
    # eval_queries=2 still measures both named positions, and training is weighted by them.
    by_position = history[-1]["position_precision"]
    assert set(by_position) == {"query letter", ":"}
    weights = json.loads((tmp_path / CHECKPOINT_STATE_FILE).read_text())["state"]["position_weights"]
    assert weights == pytest.approx([1 - by_position["query letter"] + 0.2, 1 - by_position[":"] + 0.2], abs=1e-3)
    reloaded = load_decoder(tmp_path, tiny_probed)
    for (name, a), (_, b) in zip(decoder.state_dict().items(), reloaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    # Resuming a finished run is a no-op that keeps its step count.
    train_decoder(tiny_probed, config, tmp_path, progress=False)
    assert json.loads((tmp_path / CHECKPOINT_STATE_FILE).read_text())["step"] == 80


def assert_generation_matches_forward(decoder, tokenizer, d_activation: int) -> torch.Tensor:
    """The cached, step-by-step generation computes the same distribution as a full forward pass."""
    activation = torch.randn(3, d_activation)
    site = torch.tensor([0, 3, 5])
    tok = tokenizer
    ids = decoder.generate(activation, site, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id, temperature=0)
    logits = decoder(ids[:, :-1], activation, site)
    greedy = logits.masked_fill(
        torch.nn.functional.one_hot(torch.tensor([tok.pad_id, tok.bos_id]), logits.shape[-1]).sum(0).bool(),
        float("-inf"),
    ).argmax(-1)
    for row in range(3):
        eos = (ids[row, 1:] == tok.eos_id).nonzero()
        # Every generated token up to EOS is the teacher-forced argmax; a last slot reached without
        # EOS is forced to EOS, so it is left out.
        chosen = int(eos[0]) + 1 if int(eos[0]) + 1 < ids.shape[1] - 1 else ids.shape[1] - 2
        assert chosen >= 1 and torch.equal(ids[row, 1 : chosen + 1], greedy[row, :chosen])
    return ids


def test_decoder_generation_matches_teacher_forcing(tiny_probed, tiny_decoder_dir):
    decoder = load_decoder(tiny_decoder_dir, tiny_probed)
    assert_generation_matches_forward(decoder, tiny_probed.task.tokenizer, tiny_probed.d_model)


def test_occurrence_numbers_in_training_and_generation(tiny_probed):
    assert occurrence_numbers(torch.tensor([[5, 6, 5, 5, 6, 7]])).tolist() == [[1, 1, 2, 3, 2, 1]]
    torch.manual_seed(3)  # an untrained decoder writes long runs of repeated tokens: occurrences well past 1
    config = DecoderConfig(
        vocab_size=tiny_probed.task.tokenizer.vocab_size,
        max_len=tiny_probed.task.max_len,
        d_activation=tiny_probed.d_model,
        sites=[s.name for s in decoder_sites(tiny_probed)],
        d_model=32,
        n_layers=2,
        occurrences=True,
    )
    decoder = Decoder(config).eval()
    with torch.no_grad():
        decoder.occurrence_embedding.weight.mul_(50)  # make the occurrence numbers decide the tokens
    ids = assert_generation_matches_forward(decoder, tiny_probed.task.tokenizer, tiny_probed.d_model)
    assert occurrence_numbers(ids).max() >= 5


def test_resume_keeps_the_recipe_it_started_with(tiny_probed, tmp_path):
    small = DecoderTrainConfig(
        d_model=32, n_heads=2, n_layers=1, steps=10, batch_size=16, eval_every=10, eval_queries=2, eval_samples=2
    )
    train_decoder(tiny_probed, small, tmp_path, progress=False)
    # Another shape on the command line cannot break the run: only the step count is taken.
    wider = DecoderTrainConfig(d_model=64, n_heads=4, n_layers=2, steps=20)
    decoder = train_decoder(tiny_probed, wider, tmp_path, progress=False)
    assert decoder.config.d_model == 32 and decoder.config.n_layers == 1
    saved = json.loads((tmp_path / CHECKPOINT_STATE_FILE).read_text())
    assert saved["step"] == 20 and saved["state"]["samples_seen"] == 20 * 16
    # A batch size that is asked for does change (a run moved to a GPU takes a larger one).
    train_decoder(tiny_probed, DecoderTrainConfig(steps=25, batch_size=24), tmp_path, progress=False)
    saved = json.loads((tmp_path / CHECKPOINT_STATE_FILE).read_text())
    assert saved["state"]["samples_seen"] == 20 * 16 + 5 * 24
    assert saved["state"]["config"]["batch_size"] == 24 and saved["state"]["history"][-1]["batch_size"] == 24


def test_a_run_can_start_from_a_trained_decoder(tiny_probed, tiny_decoder_dir, tmp_path):
    source = load_decoder(tiny_decoder_dir, tiny_probed)
    # Given a decoder directory, the new run takes its weights and width (not the config's d_model);
    # what it adds (a block, a block of the activation's encoder, the occurrence embedding) starts
    # out doing nothing: step 0 computes exactly what the source computes.
    deeper = source.config.n_layers + 1
    deeper_condition = source.config.n_condition_layers + 2
    config = DecoderTrainConfig(
        d_model=64,
        n_layers=deeper,
        n_condition_layers=deeper_condition,
        occurrences=True,
        init_from=str(tiny_decoder_dir),
        lr=1e-3,
        steps=5,
        batch_size=16,
        eval_queries=2,
        eval_samples=2,
    )
    start = new_decoder(tiny_probed, **config.shape())
    assert (start.config.d_model, start.config.n_layers) == (source.config.d_model, deeper)
    assert start.config.n_condition_layers == deeper_condition
    ids, _ = tiny_probed.encode_batch(["abab|a:2", "ccab|c:2"])
    activation, site = torch.randn(2, tiny_probed.d_model), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(start(ids, activation, site), source(ids, activation, site))
    # It then trains on, the added parts too, and records the shape it built as its recipe.
    trained = train_decoder(tiny_probed, config, tmp_path / "on", progress=False)
    assert trained.occurrence_embedding.weight.abs().sum() > 0
    assert trained.blocks[-1].mlp[2].weight.abs().sum() > 0
    assert trained.condition.layers[-1].down.weight.abs().sum() > 0
    recipe = json.loads((tmp_path / "on" / CHECKPOINT_STATE_FILE).read_text())["state"]["config"]
    assert (recipe["d_model"], recipe["n_layers"], recipe["lr"]) == (source.config.d_model, deeper, 1e-3)
    assert recipe["n_condition_layers"] == deeper_condition
    assert recipe["occurrences"]


def test_ioi_model_is_judged_by_logit_difference(tmp_path):
    """A few real steps on IOI; the metric compares the IO and subject logits at END."""
    from inversionview.probed.train import evaluate_probed

    config = ProbedTrainConfig(task="ioi", d_model=32, n_heads=2, steps=20, batch_size=32, eval_every=20, eval_size=50)
    probed = train_probed(config, tmp_path, progress=False)
    result = evaluate_probed(probed, n=200)
    assert result.n == 200 and 0.0 <= result.accuracy <= 1.0
    # Judge by hand for a handful: IO logit above the subject logit at END.
    task = probed.task
    texts = task.sample_texts(__import__("random").Random(1234), 5, split="heldout")
    ids, _ = probed.encode_batch(texts)
    logits = probed.logits(ids)
    expected = []
    for row, text in enumerate(texts):
        named = task.named_positions(text)
        io, s = ids[row, named["IO"]], ids[row, named["S2"]]
        expected.append(bool(logits[row, named["END"], io] > logits[row, named["END"], s]))
    assert task.judge(texts, ids, logits, None).tolist() == expected


def test_query_positions_follow_the_chosen_mode(tiny_probed):
    import random

    from inversionview.decoder.stream import ActivationStream, parse_position_mode
    from inversionview.errors import UserError
    from inversionview.probed.sites import Site

    sites = decoder_sites(tiny_probed)
    site = Site(0, "hook_resid_pre")  # token + position: reveals exactly which position was read
    config = DecoderTrainConfig(batch_size=8, queries_per_input=1, bos_share=0.0, positions="last", query_weight=3.0)
    stream = ActivationStream(tiny_probed, sites, config, random.Random(0))
    stream.site_weights = torch.tensor([1.0 if s == site else 0.0 for s in sites])
    batch = stream.batch(torch.Generator().manual_seed(0))
    inputs, activation = batch.inputs, batch.activation
    acts, _ = tiny_probed.activations(inputs, [site])
    tok = tiny_probed.task.tokenizer
    last = torch.tensor([len(tok.encode(tok.decode(row))) for row in inputs.tolist()])  # BOS = 0
    torch.testing.assert_close(activation, acts[site][torch.arange(8), last])
    # Every token a causal model's activation reads (those up to its position, each predicted one
    # index earlier) weighs --query-weight in the loss; the tokens after it weigh 1.
    read = torch.arange(batch.weights.shape[1])[None, :] < last[:, None]
    assert (batch.weights[read] == 3.0).all() and (batch.weights[~read] == 1.0).all()
    decoder = new_decoder(tiny_probed, d_model=16, n_layers=1, n_heads=2)
    with torch.no_grad():
        logits = decoder(inputs, activation, batch.site_ids)
        each = F.cross_entropy(logits.transpose(1, 2), batch.targets, ignore_index=-100, reduction="none")
        scored = batch.targets != -100
        expected = (each * batch.weights)[scored].sum() / batch.weights[scored].sum()
        torch.testing.assert_close(decoder(*batch), expected)

    config.positions = "attention:1.0"
    stream.config = config
    inputs, activation, *_ = stream.batch(torch.Generator().manual_seed(0))
    acts, patterns = tiny_probed.activations(inputs, [site], attention_layers=(1,))
    for row in range(8):
        matches = (acts[site][row] - activation[row]).norm(dim=-1) < 1e-6
        position = int(matches.nonzero()[0])
        away = patterns[1][row, 0, 1:, 0] < 0.5
        assert position >= 1 and (bool(patterns[1][row, 0, position, 0] < 0.5) or not away.any())
    # Named positions are drawn by their weights: all weight on ':' reads ':' every time.
    config.positions = "named"
    stream.position_weights = torch.tensor([0.0, 1.0])  # "query letter", ":"
    inputs, activation, *_ = stream.batch(torch.Generator().manual_seed(0))
    acts, _ = tiny_probed.activations(inputs, [site])
    colon = torch.tensor([row.index(tok.vocab.index(":")) for row in inputs.tolist()])
    torch.testing.assert_close(activation, acts[site][torch.arange(8), colon])
    for bad in ("attention:9.0", "attention:x", "everywhere"):
        with pytest.raises(UserError, match="`positions`"):
            parse_position_mode(bad, tiny_probed)


def test_resume_refuses_another_probed_model(tiny_probed, tiny_addition, tmp_path):
    from inversionview.errors import UserError

    config = DecoderTrainConfig(
        d_model=16, n_heads=2, n_layers=1, steps=2, batch_size=8, eval_every=2, eval_queries=2, eval_samples=2
    )
    train_decoder(tiny_probed, config, tmp_path, progress=False)
    with pytest.raises(UserError, match="another probed model"):
        train_decoder(tiny_addition, config, tmp_path, progress=False)


def test_sigterm_stops_training_after_a_saved_step(tiny_probed_dir, tmp_path):
    """A run asked to stop (SIGTERM here; Ctrl-C alike) finishes its step, saves, and resumes later."""
    import signal
    import subprocess
    import sys
    import time

    out, log = tmp_path / "decoder", tmp_path / "stderr.txt"
    small = ["--d-model", "32", "--n-layers", "1", "--batch-size", "16", "--threads", "1"]
    command = [sys.executable, "-m", "inversionview.cli", "train-decoder", "--probed", str(tiny_probed_dir)]
    with log.open("w") as stderr:
        long_run = [*command, "--out", str(out), "--steps", "1000000", *small]
        process = subprocess.Popen(long_run, stdout=subprocess.PIPE, stderr=stderr, text=True)
        deadline = time.monotonic() + 120
        while "train-decoder:" not in log.read_text() and time.monotonic() < deadline:  # the loop has begun
            time.sleep(0.2)
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 0, log.read_text()
    assert "stopped early on request" in stdout
    step = json.loads((out / CHECKPOINT_STATE_FILE).read_text())["step"]
    assert 0 < step < 1_000_000
    history = json.loads((out / "decoder.json").read_text())["provenance"]["history"]
    assert history[-1]["step"] == step  # the stop was evaluated and saved like a finished run
    # The same command, told to go two steps further, resumes from there.
    finished = subprocess.run([*command, "--out", str(out), "--steps", str(step + 2), *small], capture_output=True)
    assert finished.returncode == 0, finished.stderr
    assert json.loads((out / CHECKPOINT_STATE_FILE).read_text())["step"] == step + 2


class _StopAtStep:
    """A stop request that arrives during step ``n`` (the loop asks once a step)."""

    def __init__(self, n: int) -> None:
        self.asked, self.n = 0, n

    def is_set(self) -> bool:
        self.asked += 1
        return self.asked >= self.n


@pytest.mark.parametrize("verified, stop_at", [(0, 3), (4, 3), (0, 2), (4, 4)])
def test_a_stopped_and_resumed_decoder_run_trains_exactly_as_an_uninterrupted_one(
    tiny_probed, tmp_path, verified, stop_at
):
    """The random streams, the inputs drawn but not yet used, the optimizer and the weights are all
    checkpointed, and the evaluation of a run stopped between scheduled ones changes nothing it
    trains on: stopping at any step and resuming to 6 gives bit for bit the decoder of one run."""
    config = DecoderTrainConfig(
        d_model=16,
        n_heads=2,
        n_layers=1,
        steps=6,
        batch_size=8,
        eval_every=3,
        eval_queries=2,
        eval_samples=2,
        verified_queries=verified,
        verified_samples=2,
    )
    straight = train_decoder(tiny_probed, config, tmp_path / "straight", progress=False)
    train_decoder(tiny_probed, config, tmp_path / "resumed", progress=False, stop=_StopAtStep(stop_at))
    assert json.loads((tmp_path / "resumed" / CHECKPOINT_STATE_FILE).read_text())["step"] == stop_at
    resumed = train_decoder(tiny_probed, config, tmp_path / "resumed", progress=False)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_a_stopped_and_resumed_probed_run_trains_exactly_as_an_uninterrupted_one(tmp_path):
    config = ProbedTrainConfig(d_model=16, n_heads=2, steps=6, batch_size=16, eval_every=3, eval_size=20, warmup=2)
    straight = train_probed(config, tmp_path / "straight", progress=False)
    train_probed(config, tmp_path / "resumed", progress=False, stop=_StopAtStep(3))
    resumed = train_probed(config, tmp_path / "resumed", progress=False)
    assert resumed.content_hash == straight.content_hash


def test_an_evaluation_measures_a_bounded_number_of_sites_in_turn(tiny_probed, tmp_path, capsys):
    """A model of many sites (MiniLM has over a hundred) is evaluated a few sites at a time, so that
    no evaluation, the final one included, runs long; from Python too the run ends with its precision."""
    sites = [s.name for s in decoder_sites(tiny_probed)]
    config = DecoderTrainConfig(
        d_model=16, n_heads=2, n_layers=1, steps=6, batch_size=8, eval_every=2, eval_queries=2, eval_samples=2
    )
    config.eval_sites = 3
    train_decoder(tiny_probed, config, tmp_path)  # from Python, with its progress display
    assert "mean precision" in capsys.readouterr().err.strip().splitlines()[-1]  # the line that ends the run
    history = json.loads((tmp_path / "decoder.json").read_text())["provenance"]["history"]
    measured = [list(h["precision"]) for h in history]
    assert [len(m) for m in measured] == [3, 3, 3] and all(h["sites_measured"] == 3 for h in history)
    assert measured[0] == sites[:3] and measured[1] == sites[3:6]  # in turn
