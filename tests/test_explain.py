"""Which features a reading's preimage keeps: the verdicts, their sentence, and the user's own features."""

from __future__ import annotations

import json

import pytest

from inversionview.cli import main
from inversionview.decoder.store import load_decoder
from inversionview.interpret.explain import explain, truncated, verdict_of, verdicts_over
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
    # The shares are weighted: two members, one with half the weight of the other.
    weighted = verdicts_over(
        probed, ["abc", "abd"], "abc", 1, features={"last": lambda t, p: t[-1]}, weights={"abc": 1, "abd": 2}
    )
    assert weighted[0].consistency == pytest.approx(1 / 3)
    assert truncated([1.0, 1.0, 1.0, 100.0]) == [1.0, 1.0, 1.0, pytest.approx(103 / 4 * 2)]


def test_too_few_members_are_said_not_guessed(counting):
    result = explained(counting, "blocks.1.hook_resid_post", samples=40, epsilon=1e-9)
    assert all(f["verdict"] == "too few members" for f in result.features)
    assert result.explanation.startswith("too few members")
    assert verdict_of(0.95, 0.9, 50) == "not"  # consistent, but no more than chance


def test_invert_explain_json_and_the_users_own_features(capsys, tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("def first_letter(text, position):\n    return text[0]\n\n\ndef _helper():\n    pass\n")
    args = cli_args("invert", input=QUERY[0], position=QUERY[1], site="blocks.1.hook_resid_post", samples=200)
    assert main([*args, "--features", str(mine), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    names = {f["name"] for f in result["features"]}
    assert {"count", "query_letter", "first_letter"} <= names and "_helper" not in names
    assert set(result["features"][0]) == {"name", "query_value", "consistency", "baseline", "verdict", "n_members"}
    assert "count = 5" in result["explanation"]
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('nope')\n")
    assert main([*args, "--features", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "running it failed (RuntimeError: nope)" in err and len(err.strip().splitlines()) == 1


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
    assert "no answer" in err and len(err.strip().splitlines()) == 1
