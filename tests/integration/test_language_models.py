"""Free-text models: a tiny GPT-2 with its own byte-level BPE tokenizer, built here (no hub)."""

from __future__ import annotations

import json
import random
from html import escape

import pytest
import torch

from inversionview.cli import main
from inversionview.errors import UserError
from inversionview.probed import load_probed
from inversionview.probed.layouts import submodule
from inversionview.probed.sites import Site
from inversionview.tasks.text import load_corpus
from tests.acceptance.test_viewer import APP
from tests.commands import cli_args

SENTENCES = [
    "Then, Mary and John went to the store. John gave a drink to Mary.",
    "The cat sat on the mat and looked at the dog.",
    "When Alice and Bob went to the park, Bob gave a ball to Alice.",
    "A quick brown fox jumps over the lazy dog.",
    "After the meeting, Sarah and Tom went home. Tom gave a book to Sarah.",
] * 4


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    out = tmp_path_factory.mktemp("tiny_lm")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    names = ["Mary", "John", "Alice", "Bob", "Sarah", "Tom"]
    lines = [f"{a} and {b} went to the store. {b} gave a drink to {a}." for a in names for b in names if a != b]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines * 2) + "\n")
    return path


def train_decoder_on(lm_dir, **options) -> int:
    """``train-decoder --probed LM_DIR`` with these options: its exit code."""
    return main(cli_args("train-decoder", probed=lm_dir, **options))


def test_local_gpt2_directory_loads_with_its_tokenizer(tiny_lm_dir):
    from transformers import GPT2LMHeadModel

    probed = load_probed(str(tiny_lm_dir))
    assert probed.task.name == "text"
    tok = probed.task.tokenizer
    assert tok.bos_id == tok.eos_id == tok.pad_id  # GPT-2 style: one special token
    ids = probed.task.encode("John gave a drink to Mary.")
    shown = [tok.token_str(t) for t in ids]
    assert shown[0] == "<|endoftext|>" and any(s.startswith("␣") for s in shown)
    batch, _ = probed.encode_batch(["John gave a drink to Mary."])
    acts, _ = probed.activations(batch, [Site(0, "hook_resid_pre"), Site(1, "hook_resid_post")])
    reference = GPT2LMHeadModel.from_pretrained(tiny_lm_dir).eval()
    with torch.no_grad():
        hidden = reference(input_ids=batch, output_hidden_states=True).hidden_states
    torch.testing.assert_close(acts[Site(0, "hook_resid_pre")], hidden[0], atol=1e-5, rtol=0)
    final = reference.lm_head(reference.transformer.ln_f(acts[Site(1, "hook_resid_post")]))
    torch.testing.assert_close(final, reference(input_ids=batch).logits, atol=1e-5, rtol=0)


def test_corpus_lines_longer_than_the_context_are_split(tiny_lm_dir, tmp_path, caplog):
    tok = load_probed(str(tiny_lm_dir)).task.tokenizer
    long_line = " ".join(SENTENCES[:5] * 4)
    path = tmp_path / "long.txt"
    path.write_text(long_line + "\nshort line\n")
    texts = load_corpus(path, tok, max_len=24)
    assert len(texts) > 3 and "short line" in texts
    assert all(len(tok.encode(t)) <= 22 for t in texts)
    assert "split into chunks" in caplog.text


def test_bad_corpora_get_clear_messages(tiny_lm_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"fine line\n\xff\xfe broken\n")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok"}\n{"txt": 3}\n')
    for path, needle in (
        (empty, "holds no text"),
        (binary, "not UTF-8"),
        (bad_json, "line 2"),
        (tmp_path / "missing.txt", "does not exist"),
    ):
        code = train_decoder_on(tiny_lm_dir, corpus=path, steps=1, out=tmp_path / "dec")
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(UserError, match="holds no text"):
        load_corpus(empty, load_probed(str(tiny_lm_dir)).task.tokenizer, 32)


def test_full_pipeline_on_a_tiny_language_model(tiny_lm_dir, corpus_file, tmp_path, capsys, monkeypatch, fake_server):
    decoder_dir = tmp_path / "decoder"
    shape = {"d_model": 32, "n_layers": 1}
    assert train_decoder_on(tiny_lm_dir, corpus=corpus_file, steps=12, batch_size=16, **shape, out=decoder_dir) == 0
    capsys.readouterr()
    sentence = "Then, Mary and John went to the store. John gave a drink to"
    query = {"input": sentence, "position": -1, "site": "blocks.1.hook_resid_post", "samples": 20, "json": True}
    code = main(cli_args("invert", probed=tiny_lm_dir, decoder=decoder_dir, **query))
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["query"]["tokens"][-1] == "␣to" and len(result["samples"]) == 20
    assert all(s["tokens"][0] == "<|endoftext|>" for s in result["samples"])

    # The web page reads the same model, with the corpus its examples come from.
    from streamlit.testing.v1 import AppTest

    from inversionview.views.server import SETTINGS_VARIABLE

    assert (
        main(["view", "--probed", str(tiny_lm_dir), "--decoder", str(decoder_dir), "--corpus", str(corpus_file)]) == 0
    )
    monkeypatch.setenv(SETTINGS_VARIABLE, fake_server.launched["env"][SETTINGS_VARIABLE])
    page = AppTest.from_file(str(APP), default_timeout=120)
    page.run()
    box, lines = f"text::command line: {tiny_lm_dir}", corpus_file.read_text().splitlines()
    assert page.text_input(key=box).value in lines  # a held-out line to start with
    assert page.button[0].label == "Random example" and not page.button[0].disabled
    page.button[0].click().run()
    assert page.text_input(key=box).value in lines
    page.slider[0].set_value(20)
    page.text_input(key=box).input("John gave a drink to").run()
    assert not page.exception and not page.error
    html = "\n".join(element.proto.body for element in page.get("html"))
    assert html.count('class="iv-row') >= 1 and html.count('class="iv-eps"') == 1
    # The query's BPE pieces are shown as text, with their spaces visible.
    tokenizer = load_probed(str(tiny_lm_dir)).task.tokenizer
    pieces = [tokenizer.token_str(t) for t in tokenizer.encode("John gave a drink to")]
    assert any(p.startswith("␣") for p in pieces)
    assert all(f">{escape(p)}</span>" in html for p in pieces)


def test_a_corpus_decoder_writes_only_the_corpus_tokens(tiny_lm_dir, corpus_file, tmp_path):
    import torch.nn.functional as F

    from inversionview.decoder.model import next_token_targets
    from inversionview.decoder.store import load_decoder

    out = tmp_path / "decoder"
    assert (
        train_decoder_on(tiny_lm_dir, corpus=corpus_file, steps=2, batch_size=8, d_model=32, n_layers=1, out=out) == 0
    )
    probed = load_probed(str(tiny_lm_dir))
    probed.use_corpus(str(corpus_file), max_len=64)
    decoder = load_decoder(out, probed)  # the mask travels with the saved weights
    tokenizer = probed.task.tokenizer
    used = {tokenizer.eos_id} | {
        t for line in probed.task.sample_texts(random.Random(0), 200) for t in tokenizer.encode(line)
    }
    writable = set(decoder.writable.nonzero()[:, 0].tolist())
    assert used <= writable < set(range(tokenizer.vocab_size))

    # The training loss, read out over the writable tokens at scored positions only, is the
    # cross-entropy of the full logits.
    ids, lengths = probed.encode_batch(probed.task.sample_texts(random.Random(1), 4))
    targets = next_token_targets(ids, lengths)
    activation, site = torch.randn(4, probed.d_model), torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        logits = decoder(ids[:, :-1], activation, site)
        fast = decoder(ids[:, :-1], activation, site, targets)
    torch.testing.assert_close(fast, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100))
    assert torch.isinf(logits[..., ~decoder.writable]).all()

    written = decoder.generate(
        torch.randn(64, probed.d_model),
        torch.zeros(64, dtype=torch.long),
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        generator=torch.Generator().manual_seed(0),
    )
    assert set(written[:, 1:].flatten().tolist()) <= writable | {tokenizer.pad_id}

    # Resumed on a corpus with words the decoder never wrote, the run writes them too.
    grown = tmp_path / "grown.txt"
    grown.write_text(corpus_file.read_text() + "\n".join(SENTENCES) + "\n")
    assert train_decoder_on(tiny_lm_dir, corpus=grown, steps=4, batch_size=8, out=out) == 0
    probed.use_corpus(str(grown), max_len=64)
    needed = probed.task.training_tokens()
    assert not needed <= writable and needed <= set(load_decoder(out, probed).writable.nonzero()[:, 0].tolist())


def test_a_token_match_decoder_scores_tokens_by_their_probed_embedding(tiny_lm_dir, corpus_file, tmp_path, capsys):
    import torch.nn.functional as F

    from inversionview.decoder.model import next_token_targets
    from inversionview.decoder.store import continued_decoder, load_decoder

    base, matched = tmp_path / "base", tmp_path / "matched"
    shape = {"d_model": 32, "n_layers": 1, "batch_size": 8, "corpus": corpus_file}
    assert train_decoder_on(tiny_lm_dir, steps=2, out=base, **shape) == 0
    probed = load_probed(str(tiny_lm_dir))
    probed.use_corpus(str(corpus_file), max_len=64)
    source = load_decoder(base, probed)
    ids, lengths = probed.encode_batch(probed.task.sample_texts(random.Random(1), 4))
    activation, site = torch.randn(4, probed.d_model), torch.zeros(4, dtype=torch.long)

    # Added to a trained decoder, the match starts closed: the decoder computes what its source did.
    added = continued_decoder(base, probed, token_match=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(added(ids[:, :-1], activation, site), source(ids[:, :-1], activation, site))

    # The match score is the activation's cosine to each token's input embedding in the probed
    # model, times sqrt(d): an activation equal to a token's embedding matches that token best.
    embedding = probed.model.get_input_embeddings().weight.detach()
    tokens = torch.tensor([5, 17, 42])
    scores = added.match_scores(embedding[tokens])
    cosine = F.normalize(embedding[tokens], dim=-1) @ F.normalize(embedding, dim=-1).T
    torch.testing.assert_close(scores, cosine * probed.d_model**0.5)
    assert scores.argmax(-1).tolist() == tokens.tolist()

    # Trained with it, the gate opens; it travels with the weights (the embedding, from the probed
    # model, does not), and the fast loss is the cross-entropy of the full logits, match included.
    assert train_decoder_on(tiny_lm_dir, steps=3, out=matched, init_from=base, token_match=True, **shape) == 0
    decoder = load_decoder(matched, probed)
    assert decoder.config.token_match and decoder.match_gate.weight.abs().sum() > 0
    assert "probed_embedding" not in json.dumps(list(decoder.state_dict()))
    targets = next_token_targets(ids, lengths)
    with torch.no_grad():
        logits = decoder(ids[:, :-1], activation, site)
        fast = decoder(ids[:, :-1], activation, site, targets)
        stepped = decoder.start(activation, site)
        first = decoder.step(stepped, ids[:, 0], 0)
    torch.testing.assert_close(fast, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100))
    torch.testing.assert_close(first, logits[:, 0])  # token by token as in one pass
    capsys.readouterr()
    query = {
        "input": "Mary and John went to the store.",
        "position": 2,
        "site": "blocks.0.hook_resid_post",
        "samples": 8,
    }
    query["json"] = True
    assert main(cli_args("invert", probed=tiny_lm_dir, decoder=matched, **query)) == 0
    assert len(json.loads(capsys.readouterr().out)["samples"]) == 8


def test_decoder_starts_from_a_pretrained_lm(tiny_lm_dir, corpus_file, tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    from inversionview.decoder.build import decoder_sites
    from inversionview.decoder.pretrained import pretrained_decoder

    probed = load_probed(str(tiny_lm_dir))
    lm_dir = tmp_path / "lm"
    torch.manual_seed(1)
    # Wider than the probed model (48 against 32), same vocabulary.
    lm = GPT2LMHeadModel(
        GPT2Config(vocab_size=probed.task.tokenizer.vocab_size, n_positions=64, n_embd=48, n_layer=2, n_head=4)
    )
    lm.eval().save_pretrained(lm_dir)
    decoder = pretrained_decoder(lm_dir, probed, [s.name for s in decoder_sites(probed)])
    assert decoder.config.d_model == 48 and decoder.config.d_activation == 32
    torch.testing.assert_close(decoder.token_embedding.weight, lm.transformer.wte.weight)
    torch.testing.assert_close(decoder.blocks[1].attn.qkv.weight, lm.transformer.h[1].attn.c_attn.weight.T)
    torch.testing.assert_close(decoder.blocks[0].mlp[2].weight, lm.transformer.h[0].mlp.c_proj.weight.T)
    torch.testing.assert_close(decoder.head.weight, lm.lm_head.weight)
    # The MLP of a decoder block is now GPT-2's: same output for the same input.
    x = torch.randn(2, 5, 48)
    with torch.no_grad():
        torch.testing.assert_close(decoder.blocks[0].mlp(x), lm.transformer.h[0].mlp(x), atol=1e-5, rtol=0)

    out = tmp_path / "decoder"
    assert train_decoder_on(tiny_lm_dir, corpus=corpus_file, init_from=lm_dir, steps=3, batch_size=8, out=out) == 0
    assert json.loads((out / "decoder.json").read_text())["config"]["d_model"] == 48

    other = tmp_path / "other_vocab"
    GPT2LMHeadModel(GPT2Config(vocab_size=500, n_positions=64, n_embd=16, n_layer=1, n_head=2)).save_pretrained(other)
    capsys.readouterr()
    code = train_decoder_on(tiny_lm_dir, corpus=corpus_file, init_from=other, steps=1, out=tmp_path / "bad")
    assert code == 2 and "share one vocabulary" in capsys.readouterr().err


# One tiny configuration per supported family besides GPT-2: (config class, its size arguments).
_FAMILIES = {
    "llama": ("LlamaConfig", {"num_key_value_heads": 2}),
    "qwen3": ("Qwen3Config", {"num_key_value_heads": 2, "head_dim": 8}),
    "gemma": ("GemmaConfig", {"num_key_value_heads": 1, "head_dim": 8}),
    "phi3": ("Phi3Config", {"pad_token_id": 0}),
    "olmo": ("OlmoConfig", {}),
    "starcoder2": ("Starcoder2Config", {}),
    "gpt_neo": ("GPTNeoConfig", {"attention_types": [[["global", "local"], 1]], "num_layers": 2, "window_size": 4}),
    "gptj": ("GPTJConfig", {"rotary_dim": 4}),
    "gpt_neox": ("GPTNeoXConfig", {"use_parallel_residual": True}),
    "gpt_neox sequential": ("GPTNeoXConfig", {"use_parallel_residual": False}),
}


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_other_families_sites_match_the_reference_forward(family, tiny_lm_dir, tmp_path):
    """Sites mean the same in every listed architecture: a tiny model of each, built here, same tokenizer."""
    import shutil

    import transformers

    model_dir = tmp_path / family.replace(" ", "-")
    model_dir.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        if (tiny_lm_dir / name).exists():
            shutil.copy(tiny_lm_dir / name, model_dir / name)
    torch.manual_seed(0)
    vocab = load_probed(str(tiny_lm_dir)).task.tokenizer.vocab_size
    config_class, extra = _FAMILIES[family]
    # Each family names its sizes its own way; the attribute maps of its config translate these.
    config = getattr(transformers, config_class)(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        **extra,
    )
    reference = transformers.AutoModelForCausalLM.from_config(config).eval()
    reference.save_pretrained(model_dir)

    probed = load_probed(str(model_dir))
    assert probed.n_layers == 2 and probed.n_heads == 4 and not probed.reads_attention
    ids, _ = probed.encode_batch(["John gave a drink to Mary.", "The cat sat on the mat."])
    parallel = family in ("gptj", "gpt_neox")
    assert (Site(0, "hook_resid_mid") in probed.sites()) is not parallel
    if parallel:
        with pytest.raises(
            UserError, match="unknown site 'blocks.0.hook_resid_mid'; valid sites: blocks.0.hook_resid_pre"
        ):
            probed.site("blocks.0.hook_resid_mid")
    acts, _ = probed.activations(ids, probed.sites())
    with torch.no_grad():
        out = reference(input_ids=ids, output_hidden_states=True)
    for layer in range(2):
        pre = acts[Site(layer, "hook_resid_pre")]
        torch.testing.assert_close(pre, out.hidden_states[layer], atol=1e-5, rtol=0)
        mid = pre + acts[Site(layer, "hook_attn_out")]  # with a parallel residual, attn and MLP both add to pre
        if not parallel:
            torch.testing.assert_close(acts[Site(layer, "hook_resid_mid")], mid, atol=1e-5, rtol=0)
        post = acts[Site(layer, "hook_resid_post")]
        torch.testing.assert_close(post, mid + acts[Site(layer, "hook_mlp_out")], atol=1e-5, rtol=0)
        heads = sum(acts[Site(layer, "attn.hook_result", h)] for h in range(4))
        attn_bias = getattr(submodule(probed.blocks[layer], probed.layout.out_proj), "bias", None)
        if attn_bias is not None:  # as in TransformerLens, a head's result leaves out the shared bias
            heads = heads + attn_bias
        torch.testing.assert_close(heads, acts[Site(layer, "hook_attn_out")], atol=1e-5, rtol=0)
    # The last block's output, through the model's own final norm and unembedding, gives its logits.
    body = reference.get_decoder()
    final_norm = next(getattr(body, name) for name in ("norm", "ln_f", "final_layer_norm") if hasattr(body, name))
    with torch.no_grad():
        logits = reference.get_output_embeddings()(final_norm(acts[Site(1, "hook_resid_post")]))
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=0)


def test_model_by_hub_name_from_the_local_cache(tiny_lm_dir, tmp_path, monkeypatch, capsys):
    """A hub name resolves through the local Hugging Face cache (no network here)."""
    import shutil

    cache = tmp_path / "hub"
    snapshot = cache / "models--tiny-gpt2" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_lm_dir, snapshot)
    (cache / "models--tiny-gpt2" / "refs").mkdir()
    (cache / "models--tiny-gpt2" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    probed = load_probed("tiny-gpt2")
    assert probed.task.name == "text" and probed.n_layers == 2
    assert main(["evaluate", "--probed", "not-in-the-cache"]) == 2
    assert "nor a model on the Hugging Face hub" in capsys.readouterr().err


def test_hugging_face_dataset_as_a_data_source(tiny_lm_dir, tmp_path, monkeypatch, capsys):
    """--dataset reads rows through the datasets package (stood in for here: there is no hub)."""
    import sys
    import types

    names = ["Mary", "John", "Alice", "Bob", "Sarah", "Tom"]
    rows = [{"text": f"{a} and {b} went to the park. {b} gave a ball to {a}."} for a in names for b in names if a != b]
    asked = {}

    def load_dataset(name, split):
        asked.update(name=name, split=split)
        if name != "toy/ioi":
            raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub or cannot be accessed.")
        return rows + [{"text": ""}, {"text": None}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    out = tmp_path / "decoder"
    shape = {"d_model": 32, "n_layers": 1}
    assert train_decoder_on(tiny_lm_dir, dataset="toy/ioi:validation", steps=2, batch_size=8, **shape, out=out) == 0
    assert asked == {"name": "toy/ioi", "split": "validation"} and (out / "decoder.json").is_file()
    capsys.readouterr()
    assert train_decoder_on(tiny_lm_dir, dataset="nobody/nothing", steps=1, out=tmp_path / "x") == 2
    assert "cannot load it (Dataset 'nobody/nothing' doesn't exist" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    assert train_decoder_on(tiny_lm_dir, dataset="toy/ioi", steps=1, out=tmp_path / "y") == 2
    assert "pip install datasets" in capsys.readouterr().err


def test_free_text_commands_take_the_corpus_they_ask_for(tiny_lm_dir, corpus_file, capsys):
    """`evaluate` on a free-text model needs inputs: it names the option it has, and takes it."""
    assert main(cli_args("evaluate", probed=tiny_lm_dir, n=5)) == 2
    err = capsys.readouterr().err
    assert "pass --corpus FILE" in err
    assert main(cli_args("evaluate", probed=tiny_lm_dir, corpus=corpus_file, n=20, json=True)) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 20
    with pytest.raises(SystemExit):
        main(["exact", "--help"])
    assert "--corpus" in capsys.readouterr().out


def test_non_ascii_text_is_shown_whole_although_its_bytes_are_split_over_tokens(tiny_lm_dir, capsys):
    probed = load_probed(str(tiny_lm_dir))
    ids = probed.task.tokenizer.encode("Größe")
    assert any("\ufffd" in probed.task.tokenizer._tok.decode([i]) for i in ids)  # ö's bytes are split
    assert "".join(probed.query_tokens("Größe")[1:]) == "Größe"
    assert main(cli_args("tokens", probed=tiny_lm_dir, input="Größe", json=True)) == 0
    shown = [t["token"] for t in json.loads(capsys.readouterr().out)["tokens"]]
    assert "".join(shown[1:]) == "Größe" and not any("\ufffd" in t for t in shown)


def test_patching_a_free_text_model_by_answer_tokens_or_by_the_next_token_distribution(tiny_lm_dir, capsys):
    base = {"probed": tiny_lm_dir, "input": "John gave a drink to", "source": "Mary gave a drink to"}
    tok = load_probed(str(tiny_lm_dir)).task.tokenizer
    answer, alt = [w for w in (" Mary", " John", " the", " a", " to", " drink", "a", "e") if len(tok.encode(w)) == 1][
        :2
    ]
    args = cli_args("patch", **base, patch="blocks.0.hook_resid_pre@1", answer=answer, alt=alt, json=True)
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["effect"] is not None and "logit" in result["metric"]
    assert main(cli_args("patch", **base, patch="blocks.0.hook_resid_pre@1", json=True)) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kl"] >= 0 and result["effect"] is None and isinstance(result["top_token_changed"], bool)
    assert main(cli_args("patch", **base, patch="blocks.0.hook_resid_pre@1", answer="zzqx Mary", alt=alt)) == 2
    assert "give one token" in capsys.readouterr().err


def test_free_text_features_name_tokens_as_they_are_shown(tiny_lm_dir):
    task = load_probed(str(tiny_lm_dir)).task
    text = "The cat sat on the mat"
    shown = [task.tokenizer.token_str(t) for t in task.tokenizer.encode(text)]
    features = task.features()
    assert features["token"](text, 2) == (shown[1],)
    assert features["previous 2"](text, 3) == tuple(shown[:2])
    assert features["length"](text, 2) == len(shown)


def test_free_text_members_are_read_at_their_best_position(tiny_lm_dir):
    from inversionview.interpret.explain import verdicts_over

    probed = load_probed(str(tiny_lm_dir))
    token = probed.task.features()["token"]
    query, members = "The cat sat on the mat", ["A cat sat", "The big cat ran", "Then the cat left"]
    at = {m: next(i for i in range(1, 9) if token(m, i) == token(query, 2)) for m in members}
    assert set(at.values()) != {2}  # the word sits elsewhere in some members
    features = {"token": token}
    there = verdicts_over(probed, members, query, 2, features=features, read_at=at)
    assert there[0].consistency == 1.0  # every member holds the query's word where it matches
    assert verdicts_over(probed, members, query, 2, features=features)[0].consistency < 1.0
