"""A deterministic judge on the loopback OpenAI server, for generate.rate's tests.

    with OpenAIServer() as server:
        judge = Judge(latency_s=0.1)
        judge.install(server)            # answers /v1/chat/completions as a judge would

    python -m tests.fakes.rating_judge --port_file /tmp/port   # the same, from a shell

The scores depend only on the example in the message: accuracy = 1 + (words in the output
mod 5), helpfulness = 1 + (words in the instruction mod 5), so a test knows them in advance.
Examples whose output contains "UNPARSEABLE" get an answer without scores.
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from pathlib import Path

from tests.fakes.openai_server import (
    OpenAIServer,
    RouteRequest,
    RouteResponse,
    chat_reply,
    serve_until_signalled,
)

_EXAMPLE = re.compile(r"Instruction:\n(.*?)\n\nInput:\n(.*?)\n\nResponse:\n(.*?)\n\nRate the response", re.DOTALL)


def expected_scores(instruction: str, output: str) -> tuple[int, int]:
    """(accuracy, helpfulness) the judge gives an example."""
    return 1 + len(output.split()) % 5, 1 + len(instruction.split()) % 5


class Judge:
    """Answers chat calls with `Accuracy: a` / `Helpfulness: h`, with usage, counting calls."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.calls = 0
        self.seen: list[str] = []  # the instruction of each call, in arrival order
        self._lock = threading.Lock()

    def install(self, server: OpenAIServer) -> None:
        server.add_route("POST", "/v1/chat/completions", self.handle)

    def handle(self, request: RouteRequest) -> RouteResponse:
        body = request.json()
        content = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        match = _EXAMPLE.search(content)
        if match is None:
            return RouteResponse(400, {"error": {"message": "not a judge prompt", "type": "invalid_request_error",
                                                 "code": None, "param": None}})
        instruction, _, output = (part.strip() for part in match.groups())
        with self._lock:
            self.calls += 1
            self.seen.append(instruction)
        if self.latency_s:
            time.sleep(self.latency_s)
        if "UNPARSEABLE" in output:
            text = "I would rather not say."
        else:
            accuracy, helpfulness = expected_scores(instruction, output)
            text = f"Accuracy: {accuracy}\nHelpfulness: {helpfulness}"
        prompt_tokens = len(content) // 4 + 1
        return chat_reply(body.get("model", ""), text, prompt_tokens, 8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Loopback OpenAI server answering as a deterministic judge.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port_file", type=Path, default=None)
    parser.add_argument("--latency_s", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = OpenAIServer(port=args.port)
    Judge(args.latency_s).install(server)
    serve_until_signalled(server, args.port_file, "(deterministic judge)")


if __name__ == "__main__":
    main()
