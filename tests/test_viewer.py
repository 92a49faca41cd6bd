"""The web page and the HTML report: driven headlessly, and opened in a real browser."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inversionview.cli import main
from inversionview.decoder.store import load_decoder
from inversionview.inversion.invert import invert
from inversionview.probed import load_probed
from inversionview.views.html_render import render_result
from inversionview.views.server import SETTINGS_VARIABLE, is_loopback
from tests.browser import chromium

APP = Path(__file__).resolve().parents[1] / "src" / "inversionview" / "views" / "app.py"
SCREENSHOTS = Path(os.environ.get("INVERSIONVIEW_SCREENSHOTS", Path(__file__).resolve().parent / "screenshots"))


def html_of(at: AppTest) -> str:
    return "\n".join(element.proto.body for element in at.get("html"))


def without_timing(html: str) -> str:
    return re.sub(r"\d+\.\d\d s</div>", "</div>", html)


def open_page(text: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    assert not at.exception
    at.slider[0].set_value(100)  # fewer samples keep the test quick
    at.text_input(key="text::bundled: counting").input(text).run()
    return at


def test_page_reads_an_input_at_a_chosen_site_and_position():
    at = open_page("vvzccvczvv|v:5")
    at.segmented_control[0].set_value(0).run()
    site_box = next(s for s in at.selectbox if s.label == "Site")
    site_box.select("blocks.0.hook_resid_pre").run()
    at.pills[0].set_value("13::").run()  # click the ':' token
    assert not at.exception and not at.error
    page = html_of(at)
    assert "blocks.0.hook_resid_pre" in page and "position 13" in page
    # The same reading from the library: the page shows its samples, nearest first.
    probed = load_probed("counting")
    result = invert(probed, load_decoder(None, probed), "vvzccvczvv|v:5", 13, "blocks.0.hook_resid_pre", samples=100)
    assert without_timing(render_result(result)) in without_timing(page)
    assert page.count('class="iv-row') == min(60, len(result.unique_samples())) > 3
    assert page.count('class="iv-eps"') == 1


def test_page_shows_a_message_for_bad_input():
    at = open_page("vvz#cv|v:2")
    assert not at.exception
    assert any("not in the vocabulary" in e.value for e in at.error)


def test_head_site_shows_attention_weights():
    at = open_page("abcab|a:2")
    next(s for s in at.selectbox if s.label == "Site").select("blocks.1.attn.hook_result.0").run()
    assert not at.exception
    page = html_of(at)
    assert "attention from position" in page and "weight 0." in page


def test_loopback_check_and_refusal(capsys):
    assert is_loopback("127.0.0.1") and is_loopback("127.3.4.5") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    assert main(["view", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and len(err.strip().splitlines()) == 1


def test_page_loads_the_command_lines_model_with_its_options(tiny_probed_dir, tiny_decoder_dir, tmp_path, monkeypatch):
    """`view --probed HF_DIR --task … --vocab …`: a model without inversionview.json reaches the page
    with the options that load it (the environment `view` builds is the one the page reads)."""
    import shutil

    from inversionview.storage import PROBED_META_FILE

    plain = tmp_path / "hf"
    shutil.copytree(tiny_probed_dir, plain)
    (plain / PROBED_META_FILE).unlink()
    launched = {}

    def launch(command, env, check):  # records the page's environment instead of starting it
        launched.update(env=env)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", launch)
    vocab = ["--task", "counting", "--vocab", "abcdefghijklmnopqrstuvwxyz123456789|:BEP", "--bos", "B", "--eos", "E"]
    options = [*vocab, "--pad", "P", "--device", "cpu"]
    assert main(["view", "--probed", str(plain), "--decoder", str(tiny_decoder_dir), *options]) == 0
    monkeypatch.setenv(SETTINGS_VARIABLE, launched["env"][SETTINGS_VARIABLE])
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.slider[0].set_value(50)
    at.text_input(key=f"text::command line: {plain}").input("abcab|a:2").run()
    assert not at.exception and not at.error
    assert html_of(at).count('class="iv-eps"') == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "inversionview.cli", "view", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the viewer did not start within 90 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_page_in_a_real_browser(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(tmp_path) as driver:
        driver.get(server)
        WebDriverWait(driver, 150).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".iv-eps"))
        rows = driver.find_elements(By.CSS_SELECTOR, ".iv-row")
        assert len(rows) > 5
        assert driver.find_element(By.CSS_SELECTOR, ".iv-eps").is_displayed()
        assert "inside the ε-preimage" in driver.find_element(By.TAG_NAME, "body").text
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / "viewer.png"))
    assert (SCREENSHOTS / "viewer.png").stat().st_size > 10_000


def test_report_opens_offline_with_the_same_samples(tmp_path, capsys):
    from selenium.webdriver.common.by import By

    report = tmp_path / "report.html"
    args = ["--probed", "counting", "--input", "vvzccvczvv|v:5", "--position", "-2", "--samples", "150"]
    assert (
        main(
            [
                "report",
                *args,
                "--site",
                "blocks.0.hook_resid_post",
                "--site",
                "blocks.1.hook_resid_post",
                "-o",
                str(report),
            ]
        )
        == 0
    )
    html = report.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    probed = load_probed("counting")
    result = invert(probed, load_decoder(None, probed), "vvzccvczvv|v:5", -2, "blocks.1.hook_resid_post", samples=150)
    with chromium(tmp_path, offline=True) as driver:
        driver.get(report.as_uri())
        views = driver.find_elements(By.CSS_SELECTOR, ".iv-view")
        assert len(views) == 2
        shown = [
            row.find_element(By.CSS_SELECTOR, ".iv-tokens").text
            for row in views[1].find_elements(By.CSS_SELECTOR, ".iv-row")
        ]
        expected = [sample.text for sample, _ in result.unique_samples()[: len(shown)]]
        assert shown == expected and len(shown) > 5
        assert len(views[1].find_elements(By.CSS_SELECTOR, ".iv-eps")) == 1
