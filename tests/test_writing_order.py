"""A task's writing order: the decoder writes inputs in it, and every reader gets them back as they read."""

import random

import pytest
import torch

from inversionview.decoder.store import load_decoder
from inversionview.decoder.train import ActivationStream, DecoderTrainConfig, decoder_sites, train_decoder
from inversionview.decoder.verified import sequence_log_probs
from inversionview.errors import UserError
from inversionview.inversion.verify import reorder, sample_ids, sequence_lengths, site_index, token_log_probs
from inversionview.tasks import get_task


def test_addition_is_written_column_by_column_from_the_units():
    task = get_task("addition")
    ids, tok = torch.tensor([task.encode("615+861=1476")]), task.tokenizer
    written = reorder(ids, task, to_writing=True)
    # BOS, "+", "=", then (first operand, second operand, sum) digits of units, tens, hundreds; thousands.
    assert tok.decode(written[0].tolist()) == "+=5161676841"
    three_digit_sum = torch.tensor([task.encode("123+456=579")])
    assert tok.decode(reorder(three_digit_sum, task, to_writing=True)[0].tolist()) == "+=369257145"
    space = task.enumerate_ids()
    written = reorder(space, task, to_writing=True)
    assert torch.equal(written.sort(-1).values, space.sort(-1).values)  # the same tokens, moved
    assert torch.equal(reorder(written, task, to_writing=False), space)


def test_reordering_is_undone_exactly_for_any_row():
    """Whatever a decoder writes, malformed rows included, reading it and writing it back gives it back."""
    task = get_task("addition")
    generator = torch.Generator().manual_seed(0)
    eos_id = task.tokenizer.eos_id
    rows = torch.randint(0, task.tokenizer.vocab_size, (500, task.max_len), generator=generator)
    rows[:, 0] = task.tokenizer.bos_id
    ends = torch.randint(1, task.max_len, (500,), generator=generator)
    rows[torch.arange(500), ends] = eos_id  # most rows end somewhere; an earlier random EOS may end them sooner
    read = reorder(rows, task, to_writing=False)
    assert torch.equal(reorder(read, task, to_writing=True), rows)
    assert torch.equal(reorder(reorder(rows, task, to_writing=True), task, to_writing=False), rows)
    lengths = sequence_lengths(rows, eos_id)
    reordered = (lengths >= 13) & (rows[torch.arange(500), lengths - 1] == eos_id)  # an addition's lengths
    assert reordered.sum() >= 20
    assert (read != rows).any(-1)[reordered].all()
    assert torch.equal(read[~reordered], rows[~reordered])  # other lengths are written as they read


@pytest.fixture(scope="module")
def task_order_decoder_dir(tiny_addition, tmp_path_factory):
    out = tmp_path_factory.mktemp("task_order_decoder")
    config = DecoderTrainConfig(
        d_model=32,
        n_heads=2,
        n_layers=1,
        steps=150,
        batch_size=32,
        lr=3e-3,
        warmup=20,
        eval_every=150,
        eval_queries=2,
        eval_samples=4,
        writing_order="task",
    )
    train_decoder(tiny_addition, config, out, progress=False)
    return out


def test_training_batches_are_in_the_writing_order(tiny_addition):
    config = DecoderTrainConfig(batch_size=8, writing_order="task")
    stream = ActivationStream(tiny_addition, decoder_sites(tiny_addition), config, random.Random(0))
    inputs, _, _, targets = stream.batch(torch.Generator().manual_seed(0))
    tok = tiny_addition.task.tokenizer
    for row, target in zip(inputs.tolist(), targets.tolist()):
        text = tok.decode(row)
        assert text.startswith("+=") and text[2:].isdigit()
        assert tok.decode([t for t in target if t != -100]) == text  # each target is the next written token


def test_a_task_order_decoder_learns_the_format_and_samples_read_as_inputs(tiny_addition, task_order_decoder_dir):
    decoder = load_decoder(task_order_decoder_dir, tiny_addition)
    assert decoder.config.writing_order == "task"
    site = decoder_sites(tiny_addition)[0]
    tok = tiny_addition.task.tokenizer
    query = tiny_addition.activations(*tiny_addition.encode_batch(["615+861=1476"])[:1], [site])[0][site][0, 3]
    queries = query.expand(200, -1)
    samples = sample_ids(
        decoder, tiny_addition, site, queries, temperature=1.0, generator=torch.Generator().manual_seed(1)
    )
    # 150 steps teach the format: the decoder writes "+" and "=" first, and they land where they read.
    texts = [tok.decode(row.tolist()) for row in samples]
    assert sum(text[3:4] == "+" and text[7:8] == "=" for text in texts) >= 180
    # The samples are the decoder's writing, reordered: the same draw, read back.
    site_ids = torch.full((200,), site_index(decoder, site))
    written = decoder.generate(
        queries,
        site_ids,
        bos_id=tok.bos_id,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(reorder(written, tiny_addition.task, to_writing=False), samples)
    # Token probabilities come back in reading order: they sum to the written sequence's probability,
    # and "+" (written first, read at position 4) carries the first written token's probability.
    per_token = token_log_probs(decoder, tiny_addition.task, samples, query, int(site_ids[0]))
    eos_at = sequence_lengths(samples, tok.eos_id) - 1
    sums = torch.stack([per_token[i, : eos_at[i]].sum() for i in range(200)])
    whole = sequence_log_probs(decoder, written, queries, site_ids, tok.eos_id).detach()
    torch.testing.assert_close(sums, whole, rtol=1e-5, atol=1e-4)
    first = decoder(written[:, :1], queries, site_ids).log_softmax(-1)[:, 0].gather(-1, written[:, 1:2])[:, 0]
    well_formed = eos_at >= 12
    torch.testing.assert_close(per_token[well_formed, 3], first[well_formed].detach())


def test_a_bad_writing_order_is_one_line(tiny_addition, tmp_path):
    with pytest.raises(UserError, match="--writing-order"):
        train_decoder(tiny_addition, DecoderTrainConfig(steps=1, writing_order="backwards"), tmp_path, progress=False)


def test_a_run_from_a_decoder_keeps_its_order_unless_told(tiny_addition, task_order_decoder_dir):
    from inversionview.decoder.store import continued_decoder

    kept = continued_decoder(task_order_decoder_dir, tiny_addition)
    switched = continued_decoder(task_order_decoder_dir, tiny_addition, writing_order="input")
    assert (kept.config.writing_order, switched.config.writing_order) == ("task", "input")
    for (name, a), (_, b) in zip(kept.state_dict().items(), switched.state_dict().items()):
        assert torch.equal(a, b), name  # the same weights: only the order they are taught in changes
