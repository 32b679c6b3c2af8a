"""The client asks for the first token's alternatives when told to (chat and completions), keeps
them on the completion, and the journal keeps them across a resume."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from core.openai_client.client import ClientSettings, OpenAIClient
from core.openai_client.journal import Journal, record_to_result
from core.openai_client.request import GenerationRequest
from tests.fakes.openai_server import OpenAIServer, RouteRequest, RouteResponse

ALTERNATIVES = [("A", math.log(0.7)), (" B", math.log(0.2)), ("The", math.log(0.1))]


def answer(request: RouteRequest, bodies: list[dict]) -> RouteResponse:
    body = request.json()
    bodies.append(body)
    if "messages" in body:
        top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in ALTERNATIVES]
        choice = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "A"},
                  "logprobs": {"content": [{"token": "A", "logprob": top[0]["logprob"], "bytes": None,
                                            "top_logprobs": top}]}}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "finish_reason": "length", "text": "A",
                  "logprobs": {"tokens": ["A"], "token_logprobs": [ALTERNATIVES[0][1]], "text_offset": [0],
                               "top_logprobs": [dict(ALTERNATIVES)]}}
        kind = "text_completion"
    return RouteResponse(200, {"id": "x", "object": kind, "created": int(time.time()), "model": body["model"],
                               "choices": [choice],
                               "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_top_logprobs_are_asked_for_and_kept(api: str, tmp_path: Path) -> None:
    bodies: list[dict] = []
    with OpenAIServer() as server:
        server.add_route("POST", f"/v1/{'chat/' if api == 'chat' else ''}completions",
                         lambda request: answer(request, bodies))
        settings = ClientSettings(model="judge", api=api, max_tokens=1, stop=(), base_url=server.base_url,
                                  api_key="k", top_logprobs=3, max_retries=0)
        client = OpenAIClient(settings)
        try:
            (result,) = list(client.run(iter([GenerationRequest(0, ("Which is better?",))])))
        finally:
            client.close()
        plain = OpenAIClient(ClientSettings(model="judge", api=api, base_url=server.base_url, api_key="k"))
        assert "logprobs" not in plain.request_body(("x",), 5)  # only when asked for
    if api == "chat":
        assert (bodies[0]["logprobs"], bodies[0]["top_logprobs"]) == (True, 3)
    else:
        assert bodies[0]["logprobs"] == 3 and "top_logprobs" not in bodies[0]
    assert result.completions[0].top_logprobs == tuple(ALTERNATIVES)
    journal = Journal.open(tmp_path / "j.jsonl", {"s": 1})
    journal.append_result(result)
    journal.close()
    again = Journal.open(tmp_path / "j.jsonl", {"s": 1})
    assert record_to_result(again.results[0], result.request) == result
