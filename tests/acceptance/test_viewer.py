"""The web page and the HTML report: driven headlessly, and opened in a real browser."""

from __future__ import annotations

import os
import re
import signal
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
from inversionview.interpret.explain import explain
from inversionview.inversion.invert import invert
from inversionview.probed import load_probed
from inversionview.views.html_render import render_result
from inversionview.views.rows import shown_rows
from inversionview.views.server import SETTINGS_VARIABLE, is_loopback, port_in_use
from tests.browser import chromium

APP = Path(__file__).resolve().parents[2] / "src" / "inversionview" / "views" / "app.py"
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
    decoder = load_decoder(None, probed)
    result = invert(probed, decoder, "vvzccvczvv|v:5", 13, "blocks.0.hook_resid_pre", samples=100)
    assert without_timing(render_result(explain(probed, decoder, result))) in without_timing(page)
    assert 'class="iv-explain"' in page  # the feature table and its sentence
    shown, counts = shown_rows(result, 60)
    assert page.count('class="iv-row') == len(shown) - 1 > 3  # every row but the ε line
    assert counts.outside > 0 and page.count('iv-row iv-out"') == min(counts.outside, 15)  # both sides of ε are shown
    assert page.count('class="iv-eps"') == 1 and 'class="iv-legend"' in page


def test_a_repeated_reading_comes_from_the_cache(monkeypatch):
    """Streamlit runs the page's script afresh on every interaction; a reading it has made is not
    made again (the cache's keys must survive the rerun)."""
    import inversionview.inversion.invert as reading_module

    calls = []
    real = reading_module.invert
    monkeypatch.setattr(reading_module, "invert", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    at = open_page("abcabcab|b:3")
    assert not at.exception and calls
    made = len(calls)
    started = time.perf_counter()
    at.run()
    took = time.perf_counter() - started
    print(f"the cached reading came back in {took:.3f} s")  # 0.02 s on an idle machine
    assert len(calls) == made and took <= 10  # no new reading; a generous bound on shared cores


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


def test_page_loads_the_command_lines_model_with_its_options(
    tiny_probed_dir, tiny_decoder_dir, tmp_path, monkeypatch, fake_server
):
    """`view --probed HF_DIR --task … --vocab …`: a model without inversionview.json reaches the page
    with the options that load it (the environment `view` builds is the one the page reads)."""
    import shutil

    from inversionview.storage import PROBED_META_FILE

    plain = tmp_path / "hf"
    shutil.copytree(tiny_probed_dir, plain)
    (plain / PROBED_META_FILE).unlink()
    vocab = ["--task", "counting", "--vocab", "abcdefghijklmnopqrstuvwxyz123456789|:BEP", "--bos", "B", "--eos", "E"]
    options = [*vocab, "--pad", "P", "--device", "cpu"]
    assert main(["view", "--probed", str(plain), "--decoder", str(tiny_decoder_dir), *options]) == 0
    assert "--client.toolbarMode" in fake_server.launched["command"]  # no Deploy button
    monkeypatch.setenv(SETTINGS_VARIABLE, fake_server.launched["env"][SETTINGS_VARIABLE])
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


def servers_on(port: int) -> list[int]:
    """Processes whose command line serves ``port`` (the page's Streamlit server among them)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if str(port).encode() in args and any(b"streamlit" in a or b"inversionview" in a for a in args):
            pids.append(int(cmdline.parent.name))
    return pids


def wait_until_served(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the viewer did not start within {seconds:.0f} s")


def assert_stopped_within(port: int, seconds: float) -> None:
    """The port is free and no process serves it any more, within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not servers_on(port) and not port_in_use("127.0.0.1", port):
            return
        time.sleep(0.1)
    pytest.fail(f"the page's server outlived its command: {servers_on(port)} still serve port {port}")


def start_view(port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "inversionview.cli", "view", "--port", str(port)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture()
def server():
    port = _free_port()
    process = start_view(port)
    try:
        wait_until_served(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        try:
            assert_stopped_within(port, 5)
        finally:
            for pid in servers_on(port):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_view_stops_its_server_on_sigterm_and_ctrl_c(stop):
    """`kill PID` or Ctrl-C on `inversionview view` stops the Streamlit server it started (which
    ignores SIGTERM itself) and frees the port within 5 s; `kill -9`, which `view` cannot catch,
    takes the server down with it (a parent-death signal)."""
    port = _free_port()
    process = start_view(port)
    try:
        wait_until_served(f"http://127.0.0.1:{port}")
        assert len(servers_on(port)) == 2  # the command and its server
        process.send_signal(stop)
        assert_stopped_within(port, 5)
        assert process.wait(timeout=5) in (0, 130, -signal.SIGKILL)
    finally:
        process.kill()
        for pid in servers_on(port):  # a failed check must not leave a server behind either
            os.kill(pid, signal.SIGKILL)


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
        rows, counts = shown_rows(result, 60)
        expected = [row[0].text for row in rows if row is not None]  # the ε line is not a sample row
        assert shown == expected and len(shown) > 5 and counts.outside > 0
        title = driver.find_element(By.TAG_NAME, "h2").text
        assert "position 13" in title and "position 13" in views[1].text  # -2 resolved alike in both
        assert len(views[1].find_elements(By.CSS_SELECTOR, ".iv-eps")) == 1


def test_the_page_patches_the_query_position_with_a_contrast():
    at = open_page("vvzccvczvv|v:5")
    at.pills[0].set_value("13::").run()  # the ':' token
    next(s for s in at.selectbox if s.label == "Site").select("blocks.1.hook_resid_post").run()
    source = next(t for t in at.text_input if t.label == "Source (same length)")
    assert source.value and source.value != "vvzccvczvv|v:5"  # the task's contrast, drawn for the input
    next(b for b in at.button if b.label == "Patch").click().run()
    assert not at.exception and not at.error
    page = html_of(at)
    assert "effect <b>" in page and "blocks.1.hook_resid_post@13" in page
