"""A chat route on the loopback server that records every prompt it answers, for tests that must
show which prompts a run asked (a rerun after a kill asks none already journaled).

    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        log = PromptLog(server, latency_s=0.2)   # answers /v1/chat/completions, slowly
        ...
        log.asked()                               # Counter: prompt -> times answered

The answers are the server's own (`OpenAIServer.answer`), so they equal a plain run's.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from tests.fakes.openai_server import OpenAIServer, RouteRequest, RouteResponse


class PromptLog:
    """Answers chat calls as the server would, after `latency_s`, counting each prompt."""

    def __init__(self, server: OpenAIServer, latency_s: float = 0.0) -> None:
        self.server = server
        self.latency_s = latency_s
        self._asked: Counter[str] = Counter()
        self._lock = threading.Lock()
        server.add_route("POST", "/v1/chat/completions", self._handle)

    def _handle(self, request: RouteRequest) -> RouteResponse:
        body = request.json()
        if self.latency_s:
            time.sleep(self.latency_s)
        answer = self.server.answer("chat", body)
        with self._lock:
            self._asked[body["messages"][-1]["content"]] += 1
        return RouteResponse(200, answer)

    def asked(self) -> Counter[str]:
        """How many times each prompt was answered so far."""
        with self._lock:
            return Counter(self._asked)
