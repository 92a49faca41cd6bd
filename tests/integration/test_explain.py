"""Which features a reading's preimage keeps: the verdicts, their sentence, and the user's own features."""

from __future__ import annotations

import json

import pytest

from inversionview.cli import main
from inversionview.decoder.store import load_decoder
from inversionview.interpret.estimate import (
    MAX_WEIGHT_SHARE,
    ShareEstimate,
    capped_weights,
    effective_members,
    share_estimate,
)
from inversionview.interpret.explain import explain, judged, verdict_of, verdicts_over
from inversionview.interpret.inclusion import inclusion_chances
from inversionview.inversion.invert import invert
from inversionview.probed import load_probed
from tests.commands import cli_args

QUERY = ("vvzccvczvv|v:5", -2)


@pytest.fixture(scope="module")
def counting():
    probed = load_probed("counting")
    return probed, load_decoder(None, probed)


def verdicts(result) -> dict[str, dict]:
    return {f["name"]: f for f in result.features}


def explained(counting, site: str, **options):
    probed, decoder = counting
    return explain(probed, decoder, invert(probed, decoder, *QUERY, site, **options))


def test_the_count_is_encoded_at_colon_after_layer_one_and_not_in_its_embedding(counting):
    after = verdicts(explained(counting, "blocks.1.hook_resid_post", samples=300))
    assert after["count"]["verdict"] == "encoded" and after["count"]["consistency"] >= 0.9
    assert after["count"]["baseline"] < 0.3 and after["count"]["query_value"] == "5"
    embedding = verdicts(explained(counting, "blocks.0.hook_resid_pre", samples=300))
    assert embedding["count"]["verdict"] == "not"  # the embedding of ':' knows no count


def test_members_count_by_the_inverse_of_their_chance_of_being_drawn(counting):
    probed, decoder = counting
    result = invert(probed, decoder, *QUERY, "blocks.1.hook_resid_post", samples=300)
    drawn = [s.text for s in result.samples if s.in_preimage and not s.boundary_search]
    members = list(dict.fromkeys(drawn))
    chances = inclusion_chances(probed, decoder, result, members)
    assert all(0 < c <= 1 for c in chances)
    # The member drawn most often was likelier to be drawn than the typical one drawn once.
    often = max(members, key=drawn.count)
    once = sorted(chances[members.index(m)] for m in members if drawn.count(m) == 1)
    assert drawn.count(often) > 1 and chances[members.index(often)] > once[len(once) // 2]
    # The shares are weighted: half the members with half the weight of the others.
    members = [f"{i:03d}c" for i in range(50)] + [f"{i:03d}d" for i in range(50, 100)]
    weights = {m: 1.0 if m.endswith("c") else 2.0 for m in members}
    weighted = verdicts_over(probed, members, "000c", 1, features={"last": lambda t, p: t[-1]}, weights=weights)
    assert weighted[0].consistency == pytest.approx(1 / 3, abs=1e-4) and weighted[0].plain_share == 0.5


def test_a_reading_made_to_be_explained_finds_each_members_chance_in_its_colouring_pass(counting):
    """The chance read from the logits that coloured a member's tokens is the one a separate decoder
    pass over the members gives (``--explain`` no longer pays for that pass)."""
    probed, decoder = counting
    result = invert(probed, decoder, *QUERY, "blocks.1.hook_resid_post", samples=300, inclusion=True)
    members = [s for s in result.samples if s.in_preimage and not s.boundary_search]
    assert members and all(s.inclusion is not None for s in members)
    assert all(s.inclusion is None for s in result.samples if not s.in_preimage)
    texts = list(dict.fromkeys(s.text for s in members))
    plain = invert(probed, decoder, *QUERY, "blocks.1.hook_resid_post", samples=300)
    assert all(s.inclusion is None for s in plain.samples) and "inclusion" not in plain.to_dict()["samples"][0]
    from_pass = inclusion_chances(probed, decoder, plain, texts)  # no chance known: the decoder pass
    from_reading = inclusion_chances(probed, decoder, result, texts)
    assert from_reading == pytest.approx(from_pass, rel=1e-4)
    assert explain(probed, decoder, result).features == explain(probed, decoder, plain).features


def test_no_member_carries_more_than_its_share_of_the_weight():
    capped = capped_weights([1.0] * 60 + [1000.0, 500.0])
    assert max(capped) == pytest.approx(MAX_WEIGHT_SHARE * sum(capped))
    assert capped[:60] == [1.0] * 60 and capped[60] == capped[61]
    assert capped_weights([1.0, 2.0, 3.0]) == [1.0, 1.0, 1.0]  # too few to cap: all equal
    assert capped_weights([1.0] * 100) == [1.0] * 100
    assert effective_members([1.0] * 30) == pytest.approx(30) and effective_members([1.0, 0.0]) == 1


def test_an_interval_and_effective_members_come_with_every_share():
    estimate = share_estimate([True] * 90 + [False] * 10, [1.0] * 100, seed=0)
    assert estimate.weighted == estimate.plain == pytest.approx(0.9) and estimate.effective == pytest.approx(100)
    assert 0.8 < estimate.low < 0.9 < estimate.high < 0.96
    assert share_estimate([True] * 90 + [False] * 10, [1.0] * 100, seed=0) == estimate  # seeded


def test_a_verdict_is_given_only_where_the_evidence_is_clear():
    def estimate(weighted, low, high, plain=None, effective=100.0):
        plain = weighted if plain is None else plain
        return ShareEstimate(weighted, plain, effective, low, high, plain - 0.02, plain + 0.02)

    assert judged(estimate(0.97, 0.95, 0.99), 0.1, 100) == ("encoded", None)
    assert judged(estimate(0.3, 0.2, 0.4), 0.1, 100) == ("not", None)
    verdict, reason = judged(estimate(0.9, 0.85, 0.95), 0.1, 100)
    assert verdict == "uncertain" and "spans a threshold" in reason
    verdict, reason = judged(estimate(0.03, 0.01, 0.05, plain=0.86), 0.05, 100)
    assert verdict == "uncertain" and "rests on rare members" in reason
    straddling = ShareEstimate(0.95, 0.9, 100.0, 0.93, 0.97, 0.87, 0.93)
    verdict, reason = judged(straddling, 0.1, 100)
    assert verdict == "uncertain" and "members found share it 0.90 (0.87-0.93), across a threshold" in reason
    verdict, reason = judged(estimate(0.97, 0.95, 0.99, effective=12), 0.1, 12)
    assert verdict == "uncertain" and "12 effective members" in reason
    assert verdict_of(0.95, 0.9) == "not"  # consistent, but no more than chance


def test_too_few_members_are_said_not_guessed(counting):
    result = explained(counting, "blocks.1.hook_resid_post", samples=40, epsilon=1e-9)
    assert all(f["verdict"] == "uncertain" for f in result.features)
    assert result.explanation.startswith("no clear verdict")


def test_a_verdict_never_contradicts_the_members_on_the_screen(counting):
    """The reading of the brief: 86 % of the distinct members have the query's length, while their
    weighted share, dominated by a few rare longer members, is near 0. The verdict is "uncertain" and
    says why; and no verdict changes between 300 and 1,000 samples except to or from "uncertain"."""
    at = {n: verdicts(explained(counting, "blocks.1.hook_resid_post", samples=n)) for n in (300, 1000)}
    length = at[1000]["length"]
    assert length["plain_share"] == pytest.approx(0.86, abs=0.03) and length["effective_members"] >= 20
    assert length["verdict"] == "uncertain" and length["reason"]
    low, high = length["interval"]
    assert low <= length["consistency"] <= high
    for name, verdict in at[1000].items():
        assert (
            "uncertain" in (verdict["verdict"], at[300][name]["verdict"])
            or verdict["verdict"] == at[300][name]["verdict"]
        )


def test_invert_explain_json_and_the_users_own_features(capsys, tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("def first_letter(text, position):\n    return text[0]\n\n\ndef _helper():\n    pass\n")
    args = cli_args("invert", input=QUERY[0], position=QUERY[1], site="blocks.1.hook_resid_post", samples=200)
    assert main([*args, "--features", str(mine), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    names = {f["name"] for f in result["features"]}
    assert {"count", "query_letter", "first_letter"} <= names and "_helper" not in names
    keys = {"name", "query_value", "consistency", "plain_share", "interval", "effective_members", "baseline"}
    assert set(result["features"][0]) == keys | {"verdict", "reason", "n_members"}
    assert "count = 5" in result["explanation"]
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('nope')\n")
    assert main([*args, "--features", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"--features {broken}: running it failed (RuntimeError: nope)" in err and len(err.strip().splitlines()) == 1


def test_explain_map_tells_the_per_site_story(capsys, tmp_path):
    plot = tmp_path / "map.png"
    assert main(["explain-map", "--n", "2", "--samples", "60", "--json", "--plot", str(plot)]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["positions"] == ["query letter", ":"] and table["n"] == 2
    at_colon = table["encoded"][table["sites"].index("blocks.1.hook_resid_post")][1]
    assert at_colon.get("count", 0) >= 0.5  # after layer 1, ':' keeps the count
    assert plot.stat().st_size > 10_000


class _ChatServer:
    """An OpenAI-compatible /chat/completions endpoint on 127.0.0.1 that records what it receives."""

    def __enter__(self):
        import http.server
        import threading

        received = self.received = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the handler's name is http.server's)
                received.update(path=self.path, auth=self.headers.get("Authorization"))
                received["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = json.dumps({"choices": [{"message": {"content": "It keeps the count of v."}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


def test_explain_asks_an_openai_compatible_server_and_never_shows_the_key(capsys, monkeypatch):
    monkeypatch.setenv("INVERSIONVIEW_LLM_KEY", "secret-key-123")
    query = cli_args("explain", input=QUERY[0], position=QUERY[1], site="blocks.1.hook_resid_post", samples=100)
    assert main([*query, "--print-prompt"]) == 0  # no network: the prompt alone
    prompt = capsys.readouterr().out
    assert "[:]" in prompt and "Inputs inside ε" in prompt and "count = 5" in prompt
    with _ChatServer() as server:
        assert main([*query, "--llm-url", server.url, "--llm-model", "tiny", "--json"]) == 0
    out = capsys.readouterr()
    answer = json.loads(out.out)
    assert answer["response"] == "It keeps the count of v." and answer["prompt"] == prompt.strip()
    assert server.received["path"] == "/v1/chat/completions" and server.received["body"]["model"] == "tiny"
    assert server.received["auth"] == "Bearer secret-key-123" and "secret-key-123" not in out.out + out.err


def test_explain_says_in_one_line_when_no_server_answers(capsys):
    query = cli_args("explain", input=QUERY[0], position=QUERY[1], site="blocks.1.hook_resid_post", samples=40)
    assert main([*query, "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "error: --llm-url http://127.0.0.1:9/v1/chat/completions: no answer" in err
    assert len(err.strip().splitlines()) == 1


def test_the_terminal_and_the_page_show_each_share_s_interval_and_effective_members(counting):
    from rich.console import Console

    from inversionview.views.html_render import render_features as page_table
    from inversionview.views.terminal import FEATURE_LEGEND, render_features

    result = explained(counting, "blocks.1.hook_resid_post", samples=300)
    console = Console(record=True, width=200)
    render_features(result, console)
    shown = console.export_text()
    count = next(f for f in result.features if f["name"] == "count")
    assert "interval" in shown and "eff." in shown and " ".join(FEATURE_LEGEND.split()) in " ".join(shown.split())
    row = next(line for line in shown.splitlines() if line.startswith("count"))
    assert "{:.2f}-{:.2f}".format(*count["interval"]) in row and f"{count['effective_members']:.0f}" in row
    html = page_table(result)
    assert (
        "interval (90 %)" in html and "effective members" in html and "{:.2f}–{:.2f}".format(*count["interval"]) in html
    )


def test_a_feature_value_of_several_tokens_is_shown_as_text_not_as_a_tuple(counting):
    probed, _ = counting
    verdict = verdicts_over(probed, ["vvz|v:2"], "vvz|v:2", 1, features={"words": lambda t, p: ("␣quietly", "␣so")})
    assert verdict[0].query_value == "␣quietly ␣so"
