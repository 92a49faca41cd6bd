"""The command line, end to end on tiny real models: outputs and every kind of bad input."""

import json
import shutil
import socket

import pytest
import torch
from safetensors.torch import load_file

from inversionview.cli import main
from inversionview.storage import CHECKPOINT_STATE_FILE, DECODER_CONFIG_FILE, PROBED_META_FILE, WEIGHTS_FILE
from tests.commands import cli_args


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def invert(capsys, probed, decoder, **options):
    """``invert --probed PROBED --decoder DECODER`` with these options: (exit code, stdout, stderr)."""
    return run_cli(capsys, *cli_args("invert", probed=probed, decoder=decoder, **options))


def assert_user_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_invert_json(capsys, tiny_probed_dir, tiny_decoder_dir):
    code, out, err = invert(
        capsys,
        tiny_probed_dir,
        tiny_decoder_dir,
        input="vvzccvczvv|v:5",
        position=-2,
        site="blocks.1.hook_resid_post",
        samples=40,
        json=True,
    )
    assert code == 0, err
    result = json.loads(out)
    assert set(result) >= {"query", "settings", "samples", "precision", "share_in_preimage"}
    assert result["query"]["position"] == 13  # ':' of a 14-character input, BOS = 0
    assert len(result["samples"]) == 40
    distances = [s["distance"] for s in result["samples"]]
    assert distances == sorted(distances)
    for sample in result["samples"]:
        assert set(sample) >= {
            "text",
            "tokens",
            "distance",
            "best_position",
            "in_preimage",
            "probability_change",
            "colors",
            "position_distances",
        }
        assert sample["colors"] == sample["probability_change"]  # the former name, kept for one release
        assert len(sample["tokens"]) == len(sample["probability_change"]) == len(sample["position_distances"])
        assert sample["position_distances"][sample["best_position"]] == pytest.approx(sample["distance"], abs=1e-4)
        assert sample["in_preimage"] == (sample["distance"] <= 0.1)
    share = sum(s["in_preimage"] for s in result["samples"]) / 40
    assert result["precision"] == pytest.approx(share) and result["share_in_preimage"] == result["precision"]


def test_invert_terminal_view(capsys, tiny_probed_dir, tiny_decoder_dir):
    code, out, err = invert(
        capsys,
        tiny_probed_dir,
        tiny_decoder_dir,
        input="abcabc|a:2",
        position=0,
        site="blocks.0.hook_resid_pre",
        samples=30,
        temperature=1.0,
        no_color=True,
    )
    assert code == 0, err
    # At BOS every input has the same activation: all samples are inside ε, at distance 0.
    assert "100.0% inside" in out and "ε = 0.1" in out


def test_evaluate_json(capsys, tiny_probed_dir):
    code, out, _ = run_cli(capsys, "evaluate", "--probed", tiny_probed_dir, "--n", 50, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["n"] == 50 and 0 <= result["accuracy"] <= 1


def test_every_probed_command_takes_threads(capsys, tiny_probed_dir):
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    try:
        code, out, _ = run_cli(
            capsys, "evaluate", "--probed", tiny_probed_dir, "--n", 20, "--json", "--threads", wanted
        )
        assert code == 0 and json.loads(out)["n"] == 20
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--site", "blocks.7.hook_resid_post"], "valid sites"),
        (["--position", "99"], "out of range"),
        (["--input", "ab#c|a:1"], "not in the vocabulary"),
        (["--metric", "manhattan"], "invalid choice"),
        (["--samples", "0"], "at least 1"),
        (["--schedule", "warm"], "bad schedule"),
        (["--device", "tpu9"], "use auto, cpu, cuda"),
    ],
)
def test_invert_bad_input(capsys, tiny_probed_dir, tiny_decoder_dir, args, needle):
    options = {"input": "abcabc|a:2", "position": 3, "site": "blocks.0.hook_resid_post"}
    for flag, value in zip(args[::2], args[1::2]):
        options[flag.removeprefix("--")] = value
    code, _, err = invert(capsys, tiny_probed_dir, tiny_decoder_dir, **options)
    assert_user_error(code, err, needle)


def test_decoder_for_another_model_is_refused(capsys, tiny_probed_dir, tiny_decoder_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_probed_dir, other)
    weights = load_file(str(other / WEIGHTS_FILE))
    weights["transformer.wte.weight"] = weights["transformer.wte.weight"] + 1
    from safetensors.torch import save_file

    save_file(weights, str(other / WEIGHTS_FILE), metadata={"format": "pt"})
    (other / PROBED_META_FILE).unlink()  # a retrained model: new weights, no stale hash
    code, _, err = invert(
        capsys,
        other,
        tiny_decoder_dir,
        task="counting",
        vocab="abcdefghijklmnopqrstuvwxyz123456789|:BEP",
        input="abcabc|a:2",
        position=1,
        site="blocks.0.hook_resid_post",
    )
    assert_user_error(code, err, "trained for another probed model")


def test_missing_and_corrupt_checkpoints(capsys, tiny_probed_dir, tiny_decoder_dir, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", "--probed", tmp_path / "nowhere")
    assert_user_error(code, err, "no probed model")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_probed_dir, corrupt)
    (corrupt / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    code, _, err = run_cli(capsys, "evaluate", "--probed", corrupt)
    assert_user_error(code, err, "content hash")

    bad_decoder = tmp_path / "decoder"
    shutil.copytree(tiny_decoder_dir, bad_decoder)
    (bad_decoder / WEIGHTS_FILE).write_bytes(b"\x00" * 100)
    query = {"input": "abcabc|a:2", "position": 1, "site": "blocks.0.hook_resid_post"}
    code, _, err = invert(capsys, tiny_probed_dir, bad_decoder, **query)
    assert_user_error(code, err, "content hash")

    (bad_decoder / DECODER_CONFIG_FILE).write_text("{not json")
    code, _, err = invert(capsys, tiny_probed_dir, bad_decoder, **query)
    assert_user_error(code, err, "not valid JSON")

    code, _, err = invert(capsys, tiny_probed_dir, tmp_path / "none", **query)
    assert_user_error(code, err, "does not exist")


def test_hugging_face_directory_needs_task_and_vocab(capsys, tiny_probed_dir, tmp_path):
    plain = tmp_path / "hf"
    shutil.copytree(tiny_probed_dir, plain)
    (plain / PROBED_META_FILE).unlink()
    code, _, err = run_cli(capsys, "evaluate", "--probed", plain)
    assert_user_error(code, err, "--task")
    vocab = "abcdefghijklmnopqrstuvwxyz123456789|:BEP"
    code, out, err = run_cli(
        capsys,
        *cli_args("evaluate", probed=plain, task="counting", vocab=vocab, bos="B", eos="E", pad="P", n=20, json=True),
    )
    assert code == 0, err
    assert json.loads(out)["n"] == 20


def test_pickle_checkpoint_needs_explicit_permission(capsys, tiny_probed_dir, tmp_path):
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_probed_dir, legacy)
    (legacy / PROBED_META_FILE).unlink()
    state = load_file(str(legacy / WEIGHTS_FILE))
    (legacy / WEIGHTS_FILE).unlink()
    torch.save(state, legacy / "pytorch_model.bin")
    flags = ["--task", "counting", "--vocab", "abcdefghijklmnopqrstuvwxyz123456789|:BEP"]
    code, _, err = run_cli(capsys, "evaluate", "--probed", legacy, *flags)
    assert_user_error(code, err, "--allow-pickle")
    code, out, err = run_cli(capsys, "evaluate", "--probed", legacy, *flags, "--allow-pickle", "--n", 20, "--json")
    assert code == 0, err


def test_usage_errors_are_one_line(capsys):
    code, _, err = run_cli(capsys, "invert", "--bogus")
    assert_user_error(code, err, "see --help")
    code, _, err = run_cli(capsys, "train-probed", "addition-of-fish", "--out", "x")
    assert_user_error(code, err, "no training recipe")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (cli_args("invert", threads=0), "--threads: must be at least 1, got 0"),
        (cli_args("invert", limit=-1), "--limit: must be at least 1, got -1"),
        (cli_args("exact", space_sample="many"), "--space-sample: 'many' is not a whole number"),
        (cli_args("completeness", samples=0), "--samples: must be at least 1"),
        (cli_args("evaluate", n=0), "--n: must be at least 1"),
        (cli_args("view", port=70000), "--port: must be at most 65535, got 70000"),
    ],
)
def test_numbers_out_of_range_are_refused_while_parsing(capsys, argv, needle):
    code, _, err = run_cli(capsys, *argv)
    assert_user_error(code, err, needle)


def test_training_refuses_zero_steps_and_impossible_sizes_before_any_work(capsys, tiny_probed_dir, tmp_path):
    """A model saved after no steps would pass for a trained one, so none is written."""
    code, _, err = run_cli(capsys, *cli_args("train-probed", "counting", out=tmp_path / "probed", steps=0))
    assert_user_error(code, err, "--steps must be at least 1, got 0")
    for options, needle in (
        ({"steps": 0}, "--steps must be at least 1, got 0"),
        ({"steps": 2, "batch_size": 0}, "--batch-size must be at least 1, got 0"),
        ({"steps": 2, "d_model": 10}, "--d-model must be a positive multiple of the 4 heads, got 10"),
    ):
        argv = cli_args("train-decoder", probed=tiny_probed_dir, out=tmp_path / "decoder", **options)
        code, _, err = run_cli(capsys, *argv)
        assert_user_error(code, err, needle)
    assert not (tmp_path / "probed").exists() and not (tmp_path / "decoder").exists()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    for argv in (
        cli_args("train-probed", "counting", out=a_file),
        cli_args("train-decoder", probed=tiny_probed_dir, steps=2, out=a_file),
    ):
        code, _, err = run_cli(capsys, *argv)
        assert_user_error(code, err, "is a file; name a directory for the run")
    assert a_file.read_text() == "kept"


def test_view_refuses_a_port_in_use_in_one_line(capsys):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code, _, err = run_cli(capsys, "view", "--port", port)
    assert_user_error(code, err, f"port {port} on 127.0.0.1 is in use")


def test_view_reports_a_server_that_fails(capsys, fake_server):
    fake_server.status = 1
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, _, err = run_cli(capsys, "view", "--port", port)
    assert_user_error(code, err, "the page's server stopped with status 1")


def test_model_defaults_for_metric_and_epsilon(capsys, tiny_probed_dir, tiny_decoder_dir, tmp_path):
    """A model may ask for cosine distance and ε = 0.25 (as large language models do); flags still win."""
    cosine = tmp_path / "cosine"
    shutil.copytree(tiny_probed_dir, cosine)
    meta = json.loads((cosine / PROBED_META_FILE).read_text())
    meta["defaults"] = {"metric": "cosine", "epsilon": 0.25}
    (cosine / PROBED_META_FILE).write_text(json.dumps(meta))
    query = {"input": "abcabc|a:2", "position": 3, "site": "blocks.0.hook_resid_post", "samples": 8, "json": True}
    code, out, err = invert(capsys, cosine, tiny_decoder_dir, **query)
    assert code == 0, err
    settings = json.loads(out)["settings"]
    assert settings["metric"] == "cosine" and settings["epsilon"] == 0.25
    code, out, _ = invert(capsys, cosine, tiny_decoder_dir, **query, metric="euclidean", epsilon=0.05)
    settings = json.loads(out)["settings"]
    assert settings["metric"] == "euclidean" and settings["epsilon"] == 0.05


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_gpu_is_one_line(capsys, tiny_probed_dir):
    code, _, err = run_cli(capsys, "evaluate", "--probed", tiny_probed_dir, "--device", "cuda", "--n", 5)
    assert_user_error(code, err, "--device cuda: not available here")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_reading_matches_the_cpu_one(capsys, tiny_probed_dir, tiny_decoder_dir):
    """Samples are drawn with a CPU generator wherever the decoder runs, so a seeded reading is the
    same on both devices, up to float rounding in the distances."""
    query = {"input": "abcabc|a:2", "position": -2, "site": "blocks.1.hook_resid_post", "samples": 50, "seed": 3}
    readings = {}
    for device in ("cpu", "cuda"):
        code, out, err = invert(capsys, tiny_probed_dir, tiny_decoder_dir, **query, json=True, device=device)
        assert code == 0, err
        readings[device] = json.loads(out)
    cpu, gpu = readings["cpu"]["samples"], readings["cuda"]["samples"]
    assert sorted(s["text"] for s in cpu) == sorted(s["text"] for s in gpu)
    by_text = {s["text"]: s["distance"] for s in cpu}
    assert all(abs(s["distance"] - by_text[s["text"]]) < 1e-4 for s in gpu)


def test_probed_model_in_bfloat16(capsys, tiny_probed_dir, tiny_decoder_dir):
    from inversionview.probed import load_probed

    probed = load_probed(str(tiny_probed_dir), dtype="bfloat16")
    assert next(probed.model.parameters()).dtype == torch.bfloat16
    code, out, err = invert(
        capsys,
        tiny_probed_dir,
        tiny_decoder_dir,
        dtype="bfloat16",
        device="cpu",
        input="abcabc|a:2",
        position=0,
        site="blocks.1.hook_resid_post",
        samples=10,
        json=True,
    )
    assert code == 0, err
    assert json.loads(out)["precision"] == 1.0  # at BOS every input matches, in any dtype


def test_train_decoder_evaluates_every_eval_every_steps(capsys, tiny_probed_dir, tmp_path):
    base = {"probed": tiny_probed_dir, "steps": 4, "batch_size": 8}
    assert main(cli_args("train-decoder", **base, d_model=16, n_layers=1, out=tmp_path / "run", eval_every=2)) == 0
    history = json.loads((tmp_path / "run" / DECODER_CONFIG_FILE).read_text())["provenance"]["history"]
    assert [h["step"] for h in history] == [2, 4]
    capsys.readouterr()  # the first run's progress bar is not the second run's message

    assert main(cli_args("train-decoder", **base, out=tmp_path / "bad", eval_every=0)) == 2
    err = capsys.readouterr().err
    assert "--eval-every must be at least 1" in err and len(err.strip().splitlines()) <= 3


def test_train_decoder_site_weight_floor_sets_the_sampling_weights(capsys, tiny_probed_dir, tmp_path):
    base = {"probed": tiny_probed_dir, "steps": 2, "batch_size": 8}
    shape = {"d_model": 16, "n_layers": 1, "eval_every": 2}
    for floor in ("0.2", "0.01"):
        assert main(cli_args("train-decoder", **base, **shape, out=tmp_path / floor, site_weight_floor=floor)) == 0
    weights = {}
    for floor in ("0.2", "0.01"):
        state = json.loads((tmp_path / floor / CHECKPOINT_STATE_FILE).read_text())
        weights[floor] = torch.tensor(state["state"]["site_weights"])
    capsys.readouterr()  # the runs' progress bars
    # The same seed gives the same precisions, so the weights differ by the floor alone.
    assert torch.allclose(weights["0.2"] - weights["0.01"], torch.full_like(weights["0.2"], 0.19))

    assert main(cli_args("train-decoder", **base, out=tmp_path / "bad", site_weight_floor=0)) == 2
    err = capsys.readouterr().err
    assert "--site-weight-floor must be above 0" in err and len(err.strip().splitlines()) <= 3


def test_train_decoder_refuses_an_impossible_shape_in_one_line(capsys, tiny_probed_dir, tmp_path):
    base = {"probed": tiny_probed_dir, "steps": 2, "batch_size": 8}
    for option, value in (("condition_layers", -1), ("n_layers", 0)):
        assert main(cli_args("train-decoder", **base, out=tmp_path / option, **{option: value})) == 2
        err = capsys.readouterr().err
        assert "--n-layers must be at least 1 and --condition-layers at least 0" in err
        assert len(err.strip().splitlines()) <= 3
        assert not (tmp_path / option).exists()  # refused before any work


def test_train_decoder_query_weight_is_kept_in_the_recipe(capsys, tiny_probed_dir, tmp_path):
    base = {"probed": tiny_probed_dir, "steps": 2, "batch_size": 8, "d_model": 16, "n_layers": 1}
    assert main(cli_args("train-decoder", **base, out=tmp_path / "weighted", query_weight=4)) == 0
    recipe = json.loads((tmp_path / "weighted" / "decoder.json").read_text())["provenance"]["recipe"]
    assert recipe["query_weight"] == 4.0
    capsys.readouterr()
    assert main(cli_args("train-decoder", **base, out=tmp_path / "bad", query_weight=0)) == 2
    err = capsys.readouterr().err
    assert "--query-weight must be above 0" in err and len(err.strip().splitlines()) <= 3
