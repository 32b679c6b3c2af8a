"""A judge with known preferences (and an API contestant) on the loopback OpenAI server.

Added as a route to `tests.fakes.openai_server.OpenAIServer`, like `eval_judge.py`:

- a contestant request (no <answer_a> in it) is answered from directives in the task's text:
  `[len=N]` gives an answer of exactly N characters, `[q=X]` an answer that carries the tag
  (so the judge can tell which side is the contestant's);
- a judge request that asks for `logprobs` (the weighted judge) gets a one-token reply whose
  first-token `top_logprobs` put probability X on the side carrying `[q=X]` and 1 - X on the
  other, after `junk` of the mass went to an unrelated token and a fifth of each letter's mass
  to its lower-case or space-prefixed spelling (which must count for the letter); so the
  contestant's expected preference on that task is exactly X. With `logprobs=False` the
  route leaves logprobs out, as a server without them does;
- any other judge request gets a reasoned verdict by length: with probability `q_longer`
  (drawn per task from a hash of its text, so both orders agree) the longer answer wins,
  otherwise `[[tie]]`: a judge that prefers the longer answer and is otherwise indifferent.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from typing import Any

from tests.fakes.openai_server import OpenAIServer, RouteRequest, RouteResponse

_A = re.compile(r"<answer_a>\n(.*?)\n</answer_a>", re.DOTALL)
_B = re.compile(r"<answer_b>\n(.*?)\n</answer_b>", re.DOTALL)
_REQUEST = re.compile(r"<request>\n(.*?)\n</request>", re.DOTALL)
_LEN = re.compile(r"\[len=(\d+)\]")
_Q = re.compile(r"\[q=([0-9.]+)\]")
FILLER = "the quick brown fox jumps over the lazy dog "


def answer_of_length(n: int) -> str:
    """A deterministic answer of exactly n characters (n >= 1), ending in a full stop: no
    whitespace at either end for the eval's stripping to take off."""
    return (FILLER * (n // len(FILLER) + 1))[:n - 1] + "."


def unit_draw(text: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by `text`: the judge's coin for one task."""
    return int(hashlib.sha256(f"{salt}\x1f{text}".encode()).hexdigest()[:13], 16) / 16**13


class PreferenceJudgeRoute:
    """The route's handler; `judge_calls` and `contestant_calls` count arrivals."""

    def __init__(self, server: OpenAIServer, q_longer: float = 0.6, junk: float = 0.02, logprobs: bool = True,
                 salt: str = "") -> None:
        self.q_longer = q_longer
        self.junk = junk
        self.logprobs = logprobs
        self.salt = salt
        self.lock = threading.Lock()
        self.judge_calls = 0
        self.contestant_calls = 0
        self.judge_bodies: list[dict[str, Any]] = []
        server.add_route("POST", "/v1/chat/completions", self)

    # --- the judge's two rules -------------------------------------------------------------
    def reasoned(self, user: str) -> str:
        a, b = _A.search(user).group(1), _B.search(user).group(1)
        task = _REQUEST.search(user).group(1)
        if len(a) == len(b) or unit_draw(task, self.salt) >= self.q_longer:
            return "I cannot prefer either.\n[[tie]]"
        return "The longer one.\n[[A]]" if len(a) > len(b) else "The longer one.\n[[B]]"

    def weighted(self, user: str) -> tuple[str, list[dict[str, Any]] | None]:
        a, b = _A.search(user).group(1), _B.search(user).group(1)
        tag_a, tag_b = _Q.search(a), _Q.search(b)
        q = float((tag_a or tag_b).group(1)) if (tag_a or tag_b) else 0.5
        p_a = q if tag_a else 1.0 - q
        keep = 1.0 - self.junk
        alternatives = [("A", 0.8 * keep * p_a), ("a", 0.2 * keep * p_a),
                        ("B", 0.8 * keep * (1 - p_a)), (" B", 0.2 * keep * (1 - p_a)), ("The", self.junk)]
        top = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in alternatives if p > 0]
        top.sort(key=lambda alt: -alt["logprob"])
        return top[0]["token"], top

    # --- HTTP ----------------------------------------------------------------------------
    def __call__(self, request: RouteRequest) -> RouteResponse:
        body = request.json()
        messages = body["messages"]
        users = [m["content"] for m in messages if m["role"] == "user"]
        is_judge = any("<answer_a>" in text for text in users)
        with self.lock:
            if is_judge:
                self.judge_calls += 1
                self.judge_bodies.append(body)
            else:
                self.contestant_calls += 1
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if is_judge and body.get("logprobs"):
            text, top = self.weighted(users[-1])
            if self.logprobs:
                choice["logprobs"] = {"content": [{"token": text, "logprob": top[0]["logprob"],
                                                   "bytes": top[0]["bytes"], "top_logprobs": top}]}
        elif is_judge:
            text = self.reasoned(users[-1])
        else:
            task = users[0]
            length = _LEN.search(task)
            tag = _Q.search(task)
            text = answer_of_length(int(length.group(1))) if length else "Contestant answer"
            if tag:
                text += f" {tag.group(0)}"
        choice["message"] = {"role": "assistant", "content": text}
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 1 for m in messages)
        return RouteResponse(200, {
            "id": "chatcmpl-preference", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", ""), "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4 + 1,
                      "total_tokens": prompt_tokens + len(text) // 4 + 1},
        })
