"""Shared fixtures: tiny real models built and trained in seconds, seeded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inversionview.decoder.train import DecoderTrainConfig, train_decoder
from inversionview.probed import load_probed
from inversionview.probed.train import ProbedTrainConfig, train_probed


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_probed_dir(tmp_path_factory) -> Path:
    """A 2-layer, 2-head counting model trained for a few real steps."""
    out = tmp_path_factory.mktemp("probed")
    config = ProbedTrainConfig(d_model=32, n_heads=2, steps=30, batch_size=32, eval_every=30, eval_size=100)
    train_probed(config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_probed(tiny_probed_dir):
    return load_probed(str(tiny_probed_dir))


@pytest.fixture(scope="session")
def tiny_decoder_dir(tiny_probed, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("decoder")
    config = DecoderTrainConfig(
        d_model=32, n_heads=2, n_layers=1, steps=20, batch_size=32, eval_every=20, eval_queries=2, eval_samples=4
    )
    train_decoder(tiny_probed, config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_addition_dir(tmp_path_factory) -> Path:
    """A small addition model trained for a few real steps."""
    out = tmp_path_factory.mktemp("addition")
    config = ProbedTrainConfig(
        task="addition",
        d_model=16,
        n_heads=2,
        steps=20,
        batch_size=64,
        eval_every=20,
        eval_size=100,
        full_sequence_loss=False,
    )
    train_probed(config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_addition(tiny_addition_dir):
    return load_probed(str(tiny_addition_dir))


@pytest.fixture(scope="session")
def tiny_addition_decoder_dir(tiny_addition, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("addition_decoder")
    config = DecoderTrainConfig(
        d_model=32, n_heads=2, n_layers=1, steps=30, batch_size=32, eval_every=30, eval_queries=2, eval_samples=4
    )
    train_decoder(tiny_addition, config, out, progress=False)
    return out


@pytest.fixture
def fake_server(monkeypatch):
    """Stands in for the page's server process: records how ``view`` starts it (``launched``) and
    exits at once with ``status``, so that no real server is left behind."""

    class FakeServer:
        status = 0
        launched: dict = {}

        def __init__(self, command, env=None, start_new_session=False, preexec_fn=None):
            FakeServer.launched.update(command=command, env=env, start_new_session=start_new_session)
            FakeServer.launched.update(preexec_fn=preexec_fn)
            self.pid = 0

        def wait(self, timeout=None):
            return FakeServer.status

    monkeypatch.setattr("inversionview.views.server.subprocess.Popen", FakeServer)
    return FakeServer
