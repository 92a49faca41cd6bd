"""Putting a reading into words with a language model, optionally: a prompt in the paper's spirit,
sent to any OpenAI-compatible ``/chat/completions`` endpoint (a local llama.cpp, vLLM or Ollama
server, or a hosted one). Nothing here is needed for the measured verdicts of ``explain.py``.

The key, if the endpoint needs one, comes from ``INVERSIONVIEW_LLM_KEY`` and is never printed or
logged.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from inversionview.errors import UserError
from inversionview.inversion.result import InversionResult

KEY_VARIABLE = "INVERSIONVIEW_LLM_KEY"
MEMBERS_SHOWN, OUTSIDE_SHOWN = 20, 10
SYSTEM = (
    "You interpret activations of a neural network. For one activation you get inputs whose activation "
    "is nearly the same (inside ε) and inputs just outside. Say, in a few sentences, what information "
    "the activation encodes: what the inputs inside share and the inputs outside do not."
)


def reading_prompt(result: InversionResult) -> str:
    """One reading as text: the query with its position marked, members inside ε, the nearest
    samples outside, and the feature table when the reading was explained."""
    q = result.query
    marked = "".join(f"[{t}]" if i == q.position else t for i, t in enumerate(q.tokens) if i > 0 or q.position == 0)
    unique = result.unique_samples()
    inside = [s.text for s, _ in unique if s.in_preimage][:MEMBERS_SHOWN]
    outside = [s.text for s, _ in unique if not s.in_preimage][:OUTSIDE_SHOWN]
    lines = [f"Activation at {q.site}, position {q.position} (marked with []) of the input: {marked}"]
    lines += ["Inputs inside ε (the activation is nearly the same):", *(f"  {t}" for t in inside)]
    lines += ["Inputs just outside ε:", *(f"  {t}" for t in outside or ["(none drawn)"])]
    if result.features:
        lines.append("Feature consistency among the inputs inside ε (against chance):")
        lines += [
            f"  {f['name']} = {f['query_value']}: {f['consistency']} (interval {f['interval']}, "
            f"{f['plain_share']} of the members found) against {f['baseline']} ({f['verdict']})"
            for f in result.features
        ]
    return "\n".join(lines)


def ask(llm_url: str, llm_model: str, prompt: str, *, timeout: float = 120.0) -> str:
    """The answer of the OpenAI-compatible server at ``llm_url`` (its model ``llm_model``) to
    ``prompt``; any failure to get one is a one-line UserError."""
    endpoint = llm_url.rstrip("/")
    if not endpoint.endswith("/chat/completions"):
        endpoint += "/chat/completions"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    body = {"model": llm_model, "messages": messages}
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get(KEY_VARIABLE):
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(endpoint, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise UserError(f"`llm_url` {endpoint}: the server answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"`llm_url` {endpoint}: no answer ({reason})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"`llm_url` {endpoint}: the answer is not JSON") from None
    try:
        return answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise UserError(f"`llm_url` {endpoint}: the answer has no choices[0].message.content") from None
