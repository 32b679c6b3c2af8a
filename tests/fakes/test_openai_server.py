"""The loopback server itself: its CLI form (used by `make smoke` and the bench), added routes, determinism."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.fakes.openai_server import OpenAIServer, RouteResponse, ServerOptions

PROMPT = "Header\n###\n1. Instruction: Say hello to the user\n1. Input:\n<noinput>\n1. Output:\nHello!\n###\n2. Instruction:"


def test_cli_serves_until_sigterm(repo_root: Path, tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--port_file", str(port_file),
                             "--material", "synthetic", "--rpm", "600", "--script", "0:500", "--models", "m,n"],
                            cwd=repo_root, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port_file.read_text()}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError):  # --script: call 0 fails
            client.completions.create(model="m", prompt=PROMPT, max_tokens=50)
        with pytest.raises(openai.NotFoundError, match="model `gpt-4o` does not exist"):  # --models
            client.completions.create(model="gpt-4o", prompt=PROMPT, max_tokens=50)
        raw = client.completions.with_raw_response.create(model="m", prompt=[PROMPT, PROMPT], max_tokens=500)
        answer = raw.parse()
        assert raw.headers["x-ratelimit-limit-requests"] == "600"
        assert [c.index for c in answer.choices] == [0, 1]
        assert answer.choices[0].text == answer.choices[1].text  # same prompt, same answer
        assert answer.choices[0].text.startswith(" ") and "\n2. Input:\n" in answer.choices[0].text
        assert answer.usage.prompt_tokens > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_batch_cli_takes_the_server_flags_and_serves_files(repo_root: Path, tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.batch_routes", "--port", "0", "--port_file",
                             str(port_file), "--material", "synthetic", "--models", "m", "--polls_per_stage", "2"],
                            cwd=repo_root, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        base_url = f"http://127.0.0.1:{port_file.read_text()}/v1"
        assert proc.stdout.readline() == f"serving {base_url} with /v1/files and /v1/batches\n"
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError, match="model `gpt-4o` does not exist"):  # --models
            client.completions.create(model="gpt-4o", prompt=PROMPT, max_tokens=50)
        line = {"custom_id": "request-0", "method": "POST", "url": "/v1/completions",
                "body": {"model": "m", "prompt": [PROMPT], "max_tokens": 50}}
        uploaded = client.files.create(file=("in.jsonl", json.dumps(line).encode() + b"\n"), purpose="batch")
        assert uploaded.bytes == len(json.dumps(line)) + 1
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h")
        statuses = [client.batches.retrieve(batch.id).status for _ in range(2)]
        assert statuses == ["validating", "in_progress"]  # --polls_per_stage 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_chat_restates_and_routes_can_be_added() -> None:
    with OpenAIServer(ServerOptions(material="synthetic", seed=1)) as server:
        server.add_route("GET", "/v1/ping", lambda request: RouteResponse(200, {"pong": request.path}))
        with urllib.request.urlopen(server.base_url + "/ping/x") as response:
            assert json.load(response) == {"pong": "/v1/ping/x"}
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}])
        text = chat.choices[0].message.content
        assert text.startswith("2. Instruction: ")
        direct = server.answer("chat", {"messages": [{"role": "user", "content": PROMPT}]})
        assert direct["choices"][0]["message"]["content"] == text
        assert server.stats()["answered"] == 1


def test_rate_limit_answers_429_with_retry_after() -> None:
    with OpenAIServer(ServerOptions(material="synthetic", rpm=60)) as server:  # one per second, burst of one
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        client.completions.create(model="m", prompt=PROMPT, max_tokens=50)
        try:
            client.completions.create(model="m", prompt=PROMPT, max_tokens=50)
            raise AssertionError("expected a 429")
        except openai.RateLimitError as err:
            assert 1 <= int(err.response.headers["retry-after"]) <= 1
            assert 0 < int(err.response.headers["retry-after-ms"]) <= 1000
            assert err.code == "rate_limit_exceeded"
        assert server.stats()["rate_limited"] == 1
