"""A deterministic pairwise judge (and API contestant) on the loopback OpenAI server.

Added as a route to `tests.fakes.openai_server.OpenAIServer` (that file is not edited):

- a judge request (a user message holding <answer_a> and <answer_b>) is answered
  `[[A]]` or `[[B]]` for the one answer containing MARKER, `[[tie]]` when both do, and
  otherwise always `[[A]]`: a judge with a pure first-position bias, so every expected win
  rate is exact. A request whose task contains GARBLE gets a reply without a verdict.
- `faults` answers chosen calls (by arrival number) with an HTTP error status instead.
- any other chat request is a contestant's: the answer is "Answer: <the user messages
  joined with ' | '>" (so a test sees how the task was sent), plus MARKER when the task
  contains WANT_MARKER.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from tests.fakes.openai_server import (
    OpenAIServer,
    RouteRequest,
    RouteResponse,
    chat_reply,
)

MARKER = "ZEBRA-7"
GARBLE = "GARBLE"
WANT_MARKER = "WANT_MARKER"

_A = re.compile(r"<answer_a>\n(.*?)\n</answer_a>", re.DOTALL)
_B = re.compile(r"<answer_b>\n(.*?)\n</answer_b>", re.DOTALL)


class JudgeRoute:
    """The route's handler, with counts of judge and contestant calls."""

    def __init__(self, server: OpenAIServer, latency_s: float = 0.0, faults: dict[int, int] | None = None) -> None:
        self.server = server
        self.latency_s = latency_s
        self.faults = dict(faults or {})  # call number (from 0, every chat call) -> HTTP status
        self.calls = 0
        self.lock = threading.Lock()
        self.judge_calls = 0
        self.contestant_calls = 0
        self.contestant_messages: list[list[dict[str, Any]]] = []
        server.add_route("POST", "/v1/chat/completions", self)

    def verdict(self, judge_text: str) -> str:
        if GARBLE in judge_text:
            return "Both answers have merits and I cannot decide between them."
        a, b = _A.search(judge_text), _B.search(judge_text)
        a_has, b_has = MARKER in a.group(1), MARKER in b.group(1)
        if a_has and b_has:
            return "Both carry the marker.\n[[tie]]"
        if b_has:
            return "Answer B carries the marker.\n[[B]]"
        return "The first answer it is.\n[[A]]"

    def __call__(self, request: RouteRequest) -> RouteResponse:
        with self.lock:
            number = self.calls
            self.calls += 1
        if number in self.faults:
            status = self.faults[number]
            return RouteResponse(status, {"error": {"message": f"injected {status}", "type": "server_error",
                                                    "param": None, "code": None}},
                                 {"retry-after-ms": "10", "retry-after": "0"})
        body = request.json()
        messages = body["messages"]
        users = [m["content"] for m in messages if m["role"] == "user"]
        is_judge = any("<answer_a>" in text for text in users)
        with self.lock:  # counted on arrival: a call cut off by a killed client counts too
            if is_judge:
                self.judge_calls += 1
            else:
                self.contestant_calls += 1
                self.contestant_messages.append(messages)
        if self.latency_s:
            time.sleep(self.latency_s)
        if is_judge:
            text = self.verdict(users[-1])
        else:
            text = "Answer: " + " | ".join(users) + (f" {MARKER}" if WANT_MARKER in users[0] else "")
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 1 for m in messages)
        return chat_reply(body.get("model", ""), text, prompt_tokens, len(text) // 4 + 1)
